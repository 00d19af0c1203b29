# tests/lab/persistfake.py — the lab's compute driver: nova.virt.fake.FakeDriver whose
# servers survive a nova-compute restart. FakeDriver keeps its VMs in memory only, so after
# a restart existing servers are unknown to it (stop -> InstanceNotFound); a rolling upgrade
# restarts every compute. This subclass reloads this host's instances from the database
# (through the conductor, like the compute manager) in init_host, with their recorded power
# state. `install` copies it into each Nova tree's nova/virt/, where Nova loads drivers from:
#   [DEFAULT] compute_driver = persistfake.PersistentFakeDriver
# From 2023.1 on, FakeDriver reports a node UUID that is random per process (uuidsentinel), so
# a restarted compute finds no node record of its own and fails to create a duplicate; there
# this subclasses FakeDriverWithoutFakeNodes, which reports the host's stable node identity
# (<state_path>/compute_id, written by the compute manager from the existing record).
# Guests: when <lab>/run/labvirt.sock exists (tests/lab/labvirt.py runs), a server with a port
# on the lab network 10.99.0.0/24 gets a guest there (a netns with the port's address and MAC,
# sshd with the server's key, its hostname and vCPUs): created on spawn/power_on/reboot/
# unrescue/resume and on the destination of a migration, frozen on pause/suspend, removed on
# power_off/rescue/destroy (shelve offload, delete). Everything the guest needs is read from
# the instance (info cache, key_data, hostname, flavor), so the methods differing between Zed
# and 2025.1 (share_info, ...) are wrapped with *args. Without the socket: no guests, as before.

import ipaddress
import json
import os
import socket

from oslo_log import log as logging

from nova.compute import power_state
from nova import context as nova_context
from nova import objects
from nova.virt import fake

LOG = logging.getLogger(__name__)
SOCK = os.path.join(os.environ.get("UPGRUN_LAB_DIR", "/var/lib/upgrun-lab"), "run", "labvirt.sock")
LAB_NET = ipaddress.ip_network("10.99.0.0/24")


def _labvirt(op, **args):
    """one request to labvirt; None when the lab runs without it"""
    if not os.path.exists(SOCK):
        return None
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(60)
    try:
        s.connect(SOCK)
        s.sendall((json.dumps(dict(args, op=op)) + "\n").encode())
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    finally:
        s.close()
    res = json.loads(buf)
    if not res.get("ok"):
        raise RuntimeError("labvirt %s: %s" % (op, res.get("error")))
    return res


def _lab_vif(network_info):
    """(ip, mac) of the first port address on the lab network, or None"""
    for vif in network_info or []:
        for subnet in (vif.get("network") or {}).get("subnets") or []:
            for ip in subnet.get("ips") or []:
                try:
                    if ipaddress.ip_address(ip["address"]) in LAB_NET:
                        return ip["address"], vif["address"]
                except ValueError:
                    pass
    return None


# Zed has no FakeDriverWithoutFakeNodes (nor node identity): FakeDriver there
_Base = getattr(fake, "FakeDriverWithoutFakeNodes", fake.FakeDriver)


class PersistentFakeDriver(_Base):
    def _guest(self, instance, network_info=None):
        """create the instance's guest (or leave the running one alone)"""
        if network_info is None:
            network_info = instance.get_network_info()
        vif = _lab_vif(network_info)
        if vif is None:
            return
        key = instance.key_data
        if not key and instance.key_name:
            # unshelve scrubs key_data while it spawns (a real guest's disk keeps its
            # authorized_keys): the key the metadata service serves, the instance's keypair
            key = "\n".join(k.public_key for k in instance.keypairs)
        _labvirt("ensure", uuid=instance.uuid, host=self._host, ip=vif[0], mac=vif[1],
                 hostname=instance.hostname or "guest", key=key or "", vcpus=instance.flavor.vcpus)

    def _lv(self, op, instance, own=True):
        _labvirt(op, uuid=instance.uuid, host=self._host if own else None)

    def spawn(self, context, instance, image_meta, injected_files, admin_password, allocations,
              network_info=None, *args, **kwargs):
        super().spawn(context, instance, image_meta, injected_files, admin_password, allocations,
                      network_info, *args, **kwargs)
        if kwargs.get("power_on", True):
            self._guest(instance, network_info)

    def destroy(self, context, instance, *args, **kwargs):
        super().destroy(context, instance, *args, **kwargs)
        self._lv("destroy", instance)

    def power_off(self, instance, *args, **kwargs):
        super().power_off(instance, *args, **kwargs)
        self._lv("stop", instance)

    def power_on(self, context, instance, network_info, *args, **kwargs):
        super().power_on(context, instance, network_info, *args, **kwargs)
        self._guest(instance, network_info)

    def reboot(self, context, instance, network_info, *args, **kwargs):
        super().reboot(context, instance, network_info, *args, **kwargs)
        self._lv("stop", instance)
        self._guest(instance, network_info)

    def pause(self, instance):
        super().pause(instance)
        self._lv("freeze", instance)

    def unpause(self, instance):
        super().unpause(instance)
        self._lv("thaw", instance)

    def suspend(self, context, instance):
        super().suspend(context, instance)
        self._lv("freeze", instance)

    def resume(self, context, instance, network_info, *args, **kwargs):
        super().resume(context, instance, network_info, *args, **kwargs)
        self._guest(instance, network_info)

    def rescue(self, context, instance, *args, **kwargs):
        super().rescue(context, instance, *args, **kwargs)
        self._lv("stop", instance)

    def unrescue(self, context, instance, *args, **kwargs):
        super().unrescue(context, instance, *args, **kwargs)
        self._guest(instance)

    def migrate_disk_and_power_off(self, context, instance, *args, **kwargs):
        r = super().migrate_disk_and_power_off(context, instance, *args, **kwargs)
        self._lv("stop", instance)
        return r

    def finish_migration(self, context, migration, instance, disk_info, network_info, *args, **kwargs):
        super().finish_migration(context, migration, instance, disk_info, network_info, *args, **kwargs)
        if kwargs.get("power_on", args[4] if len(args) >= 5 else True):
            self._guest(instance, network_info)

    def confirm_migration(self, context, migration, instance, network_info):
        super().confirm_migration(context, migration, instance, network_info)
        if migration.source_compute != migration.dest_compute:
            self._lv("destroy", instance)   # only if this (source) host still owns it

    def finish_revert_migration(self, context, instance, network_info, *args, **kwargs):
        super().finish_revert_migration(context, instance, network_info, *args, **kwargs)
        if kwargs.get("power_on", args[2] if len(args) >= 3 else True):
            self._guest(instance, network_info)

    def post_live_migration_at_destination(self, context, instance, network_info, *args, **kwargs):
        super().post_live_migration_at_destination(context, instance, network_info, *args, **kwargs)
        self._guest(instance, network_info)   # the running guest changes owner, not restarted

    def init_host(self, host):
        super().init_host(host)
        ctxt = nova_context.get_admin_context()
        n = 0
        for inst in objects.InstanceList.get_by_host(ctxt, host, expected_attrs=["info_cache", "flavor"]):
            state = inst.power_state
            if state is None or state == power_state.NOSTATE:
                continue    # never spawned here: stays unknown, as before the restart
            self.instances[inst.uuid] = fake.FakeInstance(inst.name, state, inst.uuid)
            n += 1
            # running guests are left alone (ensure is a no-op for them); a guest that went
            # away with its host (`down`) comes back, like a hypervisor's autostarted domains
            if state in (power_state.RUNNING, power_state.PAUSED, power_state.SUSPENDED):
                try:
                    self._guest(inst)
                    if state != power_state.RUNNING:
                        self._lv("freeze", inst)
                except Exception:
                    LOG.exception("persistfake: guest of %s not restored", inst.uuid)
        LOG.info("persistfake: reloaded %d instance(s) of host %s from the database", n, host)
