"""Network faults between the controller and a device: ssh to an sshd inside a network namespace."""

from __future__ import annotations

import subprocess

import pytest

from tests.servers.netns import NetNamespace
from toolkit.errors import DeviceLostError, UnreachableError
from toolkit.transports import open_transport

pytestmark = pytest.mark.network


def test_namespace_has_its_own_address_and_is_cleaned_up():
    from tests.servers.netns import netns_available

    if not netns_available():
        pytest.skip("needs root, iproute2 and nftables")
    with NetNamespace() as ns:
        inside = ns.run(["ip", "-o", "-4", "addr", "show"]).stdout
        assert ns.inner_address in inside
        assert ns.host_address not in inside
        outside = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True).stdout
        assert ns.host_address in outside
        assert ns.inner_address not in outside
    assert ns.name not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert ns.host_if not in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout


def test_drop_rule_makes_ssh_time_out_and_restore_heals(netns, netns_sshd):
    options = netns_sshd.transport_options(connect_timeout_s=2)
    with open_transport(netns_sshd.uri, options) as transport:
        assert transport.run(["echo", "ok"]).stdout == "ok\n"
        netns.drop(port=22)
        # The established connection stops getting answers: ServerAlive (1 s x 3) declares it lost.
        with pytest.raises(DeviceLostError):
            transport.run(["echo", "lost"], timeout=120)
        # New connections time out too.
        with pytest.raises(UnreachableError, match="timed out"):
            transport.run(["echo", "unreachable"], timeout=120)
        netns.restore()
        assert transport.run(["echo", "healed"]).stdout == "healed\n"


def test_reject_rule_is_connection_refused(netns, netns_sshd):
    netns.reject(port=22)
    transport = open_transport(netns_sshd.uri, netns_sshd.transport_options(connect_timeout_s=2))
    with pytest.raises(UnreachableError, match="refused"):
        transport.run(["true"])
    transport.close()


def test_unreachable_rule_is_no_route(netns, netns_sshd):
    netns.unreachable(port=22)
    transport = open_transport(netns_sshd.uri, netns_sshd.transport_options(connect_timeout_s=2))
    with pytest.raises(UnreachableError, match="no route"):
        transport.run(["true"])
    transport.close()
