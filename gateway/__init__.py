"""The S3 endpoint: SigV4 verification, authorization, proxy and usage counters.

``gateway.sigv4`` is pure Python with no Django import, so the ASGI gateway, the internal
verify API and the tests share it.
"""
