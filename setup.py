"""The one compiled module: the NTS server's per-request path against OpenSSL (libcrypto).

Optional: without a C compiler or OpenSSL's headers (Debian: gcc, libssl-dev) the build goes on
without it and lockstep.ntp.nts.server uses its Python path, the reference, alone.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "lockstep.ntp.nts._fastpath",
            ["src/lockstep/ntp/nts/_fastpath.c"],
            libraries=["crypto"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
            optional=True,
        )
    ]
)
