"""The Docker Engine API, served by the gateway so the docker CLI and Docker SDKs drive berth.

Routes are thin: parse the request, call the same Gateway method the gRPC Engine API
uses, encode the answer as docker does. `errors` maps domain errors to HTTP once,
`convert` holds every docker JSON shape, `hijack` the attach connections.
"""
