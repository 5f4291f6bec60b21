"""The receiver address rules (SSRF): every spelling of a non-public address is refused, before
any connection, at save time and at every delivery."""

import ipaddress
import socket

import pytest

from webhooks.addresses import AddressRefused, url_check

REFUSED_HOSTS = [
    "127.0.0.1",
    "2130706433",  # decimal 127.0.0.1
    "0x7f000001",  # hex
    "0x7f.0.0.1",  # hex first part
    "0177.0.0.1",  # octal
    "127.1",  # short form
    "0",  # unspecified, short
    "0.0.0.0",
    "[::]",
    "[::1]",
    "[::ffff:127.0.0.1]",  # IPv4-mapped
    "[::ffff:7f00:1]",  # IPv4-mapped, hex
    "[::127.0.0.1]",  # IPv4-compatible; `is_global` is True on Python 3.11.7
    "[64:ff9b::7f00:1]",  # NAT64 of 127.0.0.1; `is_global` is True on Python 3.11.7
    "[2002:7f00:1::]",  # 6to4 of 127.0.0.1; `is_global` is True on Python 3.11.7
    "[2002:a9fe:a9fe::]",  # 6to4 of the metadata address
    "169.254.169.254",  # cloud metadata
    "2852039166",  # the same, decimal
    "[::ffff:169.254.169.254]",
    "[fd00:ec2::254]",  # AWS metadata over IPv6 (unique local)
    "100.64.0.1",  # CGNAT
    "100.127.255.254",
    "10.0.0.1",
    "172.16.0.1",
    "192.168.1.1",
    "192.0.0.9",  # special-purpose; `is_global` is True on Python 3.11.7
    "198.18.0.1",  # benchmarking
    "224.0.0.1",  # multicast
    "240.0.0.1",  # reserved
    "255.255.255.255",
    "[fe80::1]",  # link-local
    "[fec0::1]",  # site-local; `is_global` is True on Python 3.11.7
    "[fc00::1]",
    "[ff02::1]",  # multicast
    "[2001:db8::1]",  # documentation
    "localhost",
]


@pytest.mark.parametrize("host", REFUSED_HOSTS)
def test_every_spelling_of_a_non_public_address_is_refused(host):
    with pytest.raises(AddressRefused, match="not a public address"):
        url_check(f"https://{host}/hook")


@pytest.mark.parametrize(
    "address", ["::7f00:1", "64:ff9b::7f00:1", "2002:7f00:1::", "fec0::1", "192.0.0.9"]
)
def test_python_ipaddress_calls_these_global_so_the_deny_list_is_needed(address):
    # CVE-2024-4032: if this starts failing, Python's ranges were fixed; the deny list stays.
    assert ipaddress.ip_address(address).is_global


def test_public_address_is_accepted_and_pinned():
    checked = url_check("https://93.184.215.14:8443/hook?a=1")
    assert (str(checked.ip), checked.port, checked.target) == ("93.184.215.14", 8443, "/hook?a=1")
    assert checked.url == "https://93.184.215.14:8443/hook?a=1"
    assert checked.host_header == "93.184.215.14:8443"


@pytest.mark.parametrize(
    "url, reason",
    [
        ("http://93.184.215.14/hook", "must use https"),
        ("ftp://93.184.215.14/hook", "must use https"),
        ("https:///hook", "no host"),
        ("https://user:pw@93.184.215.14/hook", "credentials"),
        ("https://93.184.215.14:99999/hook", "not a valid URL"),
        ("https://no-such-host.invalid/hook", "does not resolve"),
        ("not a url", "must use https"),
    ],
)
def test_malformed_or_plain_http_urls_are_refused(url, reason):
    with pytest.raises(AddressRefused, match=reason):
        url_check(url)


def test_plain_http_is_accepted_when_allowed(settings):
    settings.WEBHOOK_ALLOW_HTTP = True
    assert url_check("http://93.184.215.14/hook").port == 80


def test_allowed_networks_open_private_receivers_and_nothing_else(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["10.0.0.0/8", "fd00::/8"]
    assert str(url_check("https://10.1.2.3/hook").ip) == "10.1.2.3"
    assert str(url_check("https://[::ffff:10.1.2.3]/hook").ip) == "::ffff:a01:203"
    assert str(url_check("https://[fd00::5]/hook").ip) == "fd00::5"
    for host in ("127.0.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1"):
        with pytest.raises(AddressRefused):
            url_check(f"https://{host}/hook")


def test_a_name_with_one_private_address_among_public_ones_is_refused(monkeypatch):
    real = socket.getaddrinfo

    def resolve(host, port, *args, **kwargs):
        if host != "mixed.test":
            return real(host, port, *args, **kwargs)
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))
            for address in ("93.184.215.14", "10.0.0.1")
        ]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with pytest.raises(AddressRefused, match=r"10\.0\.0\.1"):
        url_check("https://mixed.test/hook")
