"""The one compiled module: the NTS server's per-request path against Nettle's AES-SIV.

Nettle (libnettle, GNU) is what chronyd's NTS uses for the same AEAD: its SIV contexts are set up
once per key and used read-only, where OpenSSL 3.0's EVP AES-SIV costs ≈ 2 µs to key or ≈ 1 µs
to copy per operation and cannot take the empty plaintext of a request's authenticator.

Optional: without a C compiler or Nettle's headers (Debian: gcc, nettle-dev) the build goes on
without it and lockstep.ntp.nts.server uses its Python path, the reference, alone.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "lockstep.ntp.nts._fastpath",
            ["src/lockstep/ntp/nts/_fastpath.c"],
            libraries=["nettle"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
            optional=True,
        )
    ]
)
