"""The Docker Engine API, served by the gateway so the docker CLI and Docker SDKs drive berth.

Routes are thin: parse the request, call the same Gateway method the gRPC Engine API
uses, encode the answer as docker does. `errors` maps domain errors to HTTP once,
`hijack` holds the attach connections; the docker JSON shapes and request parsing
live in berth_docker (clients/python), shared with the CLI.
"""
