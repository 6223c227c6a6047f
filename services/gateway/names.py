"""Generated container names, docker-style: an adjective and a notable scientist or engineer."""

from __future__ import annotations

import secrets

_ADJECTIVES = (
    "admiring", "adoring", "affectionate", "agitated", "amazing", "angry", "awesome", "beautiful",
    "blissful", "bold", "boring", "brave", "busy", "charming", "clever", "compassionate",
    "competent", "confident", "cool", "cranky", "crazy", "dazzling", "determined", "distracted",
    "dreamy", "eager", "ecstatic", "elastic", "elated", "elegant", "eloquent", "epic", "exciting",
    "fervent", "festive", "flamboyant", "focused", "friendly", "frosty", "funny", "gallant",
    "gifted", "goofy", "gracious", "great", "happy", "hardcore", "heuristic", "hopeful", "hungry",
    "infallible", "inspiring", "intelligent", "interesting", "jolly", "jovial", "keen", "kind",
    "laughing", "loving", "lucid", "magical", "modest", "musing", "mystifying", "naughty",
    "nervous", "nice", "nifty", "nostalgic", "objective", "optimistic", "peaceful", "pedantic",
    "pensive", "practical", "priceless", "quirky", "quizzical", "recursing", "relaxed",
    "reverent", "romantic", "sad", "serene", "sharp", "silly", "sleepy", "stoic", "strange",
    "stupefied", "suspicious", "sweet", "tender", "thirsty", "trusting", "unruffled", "upbeat",
    "vibrant", "vigilant", "vigorous", "wizardly", "wonderful", "xenodochial", "youthful",
    "zealous", "zen",
)

_SURNAMES = (
    "agnesi", "albattani", "allen", "almeida", "archimedes", "ardinghelli", "aryabhata",
    "austin", "babbage", "banach", "bardeen", "bartik", "bassi", "bell", "bhabha", "blackwell",
    "bohr", "booth", "borg", "bose", "brahmagupta", "brown", "carson", "chandrasekhar", "clarke",
    "colden", "curie", "darwin", "davinci", "dijkstra", "einstein", "elion", "engelbart",
    "euclid", "euler", "faraday", "fermat", "fermi", "feynman", "franklin", "galileo", "gauss",
    "goldberg", "goodall", "hamilton", "hawking", "heisenberg", "hodgkin", "hopper", "hypatia",
    "jackson", "jang", "johnson", "kepler", "khorana", "knuth", "kowalevski", "lalande",
    "lamarr", "leakey", "lovelace", "lumiere", "mayer", "mccarthy", "mcclintock", "meitner",
    "mendel", "morse", "newton", "nobel", "noether", "pare", "pascal", "pasteur", "perlman",
    "pike", "poincare", "ptolemy", "raman", "ride", "ritchie", "rosalind", "sammet", "shannon",
    "shockley", "sinoussi", "stallman", "swartz", "tesla", "thompson", "torvalds", "turing",
    "varahamihira", "wilbur", "wiles", "williams", "wing", "wozniak", "wright", "yalow", "yonath",
)


def generate(taken=lambda name: False) -> str:
    """A random "adjective_surname"; a digit is added when `taken` says the plain one is in use."""
    name = f"{secrets.choice(_ADJECTIVES)}_{secrets.choice(_SURNAMES)}"
    if taken(name):
        name += str(secrets.randbelow(10))
    return name
