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
from oslo_log import log as logging

from nova.compute import power_state
from nova import context as nova_context
from nova import objects
from nova.virt import fake

LOG = logging.getLogger(__name__)


# Zed has no FakeDriverWithoutFakeNodes (nor node identity): FakeDriver there
_Base = getattr(fake, "FakeDriverWithoutFakeNodes", fake.FakeDriver)


class PersistentFakeDriver(_Base):
    def init_host(self, host):
        super().init_host(host)
        ctxt = nova_context.get_admin_context()
        n = 0
        for inst in objects.InstanceList.get_by_host(ctxt, host, expected_attrs=[]):
            state = inst.power_state
            if state is None or state == power_state.NOSTATE:
                continue    # never spawned here: stays unknown, as before the restart
            self.instances[inst.uuid] = fake.FakeInstance(inst.name, state, inst.uuid)
            n += 1
        LOG.info("persistfake: reloaded %d instance(s) of host %s from the database", n, host)
