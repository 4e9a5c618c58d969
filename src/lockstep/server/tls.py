"""HTTPS for phones on the LAN (camera, WebCrypto and service workers need a secure context).

``lockstep serve --lan`` makes a local certificate authority once (``data/tls/ca.pem``, key beside it,
mode 0600) and a server certificate for this machine's LAN addresses signed by it. The phone installs
the root once (served at ``/ca.crt``, fingerprint shown to compare); then the app, its offline service
worker and "Add to home screen" work as on any trusted site. A real certificate (ACME) needs none of
this: docs/deploy.md.
"""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def lan_addresses() -> list[str]:
    """This machine's private IPv4 addresses, as `hostname -I` lists them (no packets sent)."""
    try:
        output = subprocess.run(
            ["/usr/bin/hostname", "-I"], capture_output=True, text=True, timeout=2, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    addresses = []
    for word in output.split():
        try:
            address = ipaddress.ip_address(word)
        except ValueError:
            continue
        if address.version == 4 and address.is_private and not address.is_loopback:
            addresses.append(word)
    return addresses


CA_DAYS = 3650
LEAF_DAYS = 397
"""Apple and Chrome refuse longer-lived server certificates; a new one is made 30 days before expiry."""
RENEW_BEFORE = datetime.timedelta(days=30)
# The root a phone installs may vouch only for names a LAN server can have (RFC 5280 §4.2.1.10): its
# key, on this machine's disk, can then never impersonate a public site to that phone.
# Beyond these, the /24 (or /64) of each LAN address the server has when the root is made.
PERMITTED_NETWORKS = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "127.0.0.0/8",
    "fc00::/7",
    "fe80::/10",
    "::1/128",
)
PERMITTED_NAMES = ("localhost", "local", "lan", "home.arpa", "internal")


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _permits(ca: x509.Certificate, host: str) -> bool:
    """Whether the root's name constraints (RFC 5280 §4.2.1.10) allow a certificate for ``host``."""
    subtrees = ca.extensions.get_extension_for_class(x509.NameConstraints).value.permitted_subtrees or []
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        names = [str(n.value) for n in subtrees if isinstance(n, x509.DNSName)]
        return any(host == name or host.endswith("." + name) for name in names)
    networks = [n.value for n in subtrees if isinstance(n, x509.IPAddress)]
    return any(
        isinstance(net, ipaddress.IPv4Network | ipaddress.IPv6Network) and address in net for net in networks
    )


def ensure_local_ca(directory: Path, hosts: list[str] | None = None) -> tuple[Path, Path]:
    """This server's local certificate authority, made once: ``ca.pem`` (the root a phone installs) and
    ``ca-key.pem`` (mode 0600). Name-constrained to private networks, the networks of ``hosts`` and
    local names; valid 10 years. Made anew (phones install it again) only if it cannot vouch for
    ``hosts`` (the machine moved to an unusual network) or is about to expire."""
    hosts = hosts or []
    cert_path, key_path = directory / "ca.pem", directory / "ca-key.pem"
    if cert_path.is_file() and key_path.is_file():
        existing = x509.load_pem_x509_certificate(cert_path.read_bytes())
        fresh = existing.not_valid_after_utc > datetime.datetime.now(datetime.UTC) + RENEW_BEFORE
        try:
            covers = all(_permits(existing, host) for host in hosts)
        except x509.ExtensionNotFound:
            covers = False
        if fresh and covers:
            return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Lockstep"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"Lockstep local CA {now:%Y-%m-%d %H:%M}"),
        ]
    )
    networks = [ipaddress.ip_network(net) for net in PERMITTED_NETWORKS]
    for host in hosts:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            continue
        if not any(address in net for net in networks if net.version == address.version):
            networks.append(
                ipaddress.ip_network(f"{host}/{24 if address.version == 4 else 64}", strict=False)
            )
    permitted: list[x509.GeneralName] = [x509.IPAddress(net) for net in networks]
    permitted += [x509.DNSName(dns) for dns in PERMITTED_NAMES]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=None), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(key_path, key)
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def ensure_certificate(directory: Path, hosts: list[str]) -> tuple[Path, Path]:
    """A server certificate for ``hosts`` signed by the local CA (made if missing); the one in
    ``directory`` is reused while it covers ``hosts``, was issued by that CA, and is not about to expire."""
    ca_cert_path, ca_key_path = ensure_local_ca(directory, hosts)
    ca_certificate = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    if cert_path.is_file() and key_path.is_file():
        existing = x509.load_pem_x509_certificate(cert_path.read_bytes())
        try:
            names = existing.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            existing.verify_directly_issued_by(ca_certificate)
            ours = True
        except (x509.ExtensionNotFound, ValueError, TypeError, InvalidSignature):
            ours = False  # e.g. the self-signed certificate earlier versions made
        if ours:
            covered = {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
            covered |= set(names.get_values_for_type(x509.DNSName))
            fresh = existing.not_valid_after_utc > datetime.datetime.now(datetime.UTC) + RENEW_BEFORE
            if set(hosts) <= covered and fresh:
                return cert_path, key_path
    ca_key = _load_key(ca_key_path)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    alt_names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    certificate = (
        x509.CertificateBuilder()
        # Names live in the SAN; a hostname-like CN would itself be held to the root's name constraints.
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Lockstep server")]))
        .issuer_name(ca_certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=LEAF_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(key_path, key)
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def der(cert_path: Path) -> bytes:
    """The certificate as DER, the form phones install from a ``.crt`` download."""
    return x509.load_pem_x509_certificate(cert_path.read_bytes()).public_bytes(serialization.Encoding.DER)


def fingerprint(cert_path: Path) -> str:
    """SHA-256 fingerprint as browsers show it: colon-separated upper-case hex."""
    certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return ":".join(f"{b:02X}" for b in certificate.fingerprint(hashes.SHA256()))
