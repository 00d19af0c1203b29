# tests/lab/labmech.py — the lab's ML2 mechanism driver: binds every port on a flat segment of
# physical network `lab` (the lab network upgrun-lab-net), on any host, with vif_type "other"
# (the fake compute driver plugs nothing and accepts any bound vif_type), and marks the port
# ACTIVE at binding, as an L2 agent would once it wired the port (no agent runs in the lab;
# the status change also makes Neutron send Nova its network-vif-plugged event). The guest
# behind the port is made by tests/lab/labvirt.py. Loaded the way Neutron loads mechanism
# drivers: entry point `labmech` in group neutron.ml2.mechanism_drivers, declared by
# upgrun_labmech.dist-info next to this file in <lab>/neutron-py (on neutron-server's
# PYTHONPATH; `up` copies both there).
from neutron_lib.api.definitions import portbindings
from neutron_lib import constants
from neutron_lib.plugins.ml2 import api
from oslo_log import log as logging

LOG = logging.getLogger(__name__)
PHYSNET = "lab"


class LabMechanismDriver(api.MechanismDriver):
    def initialize(self):
        LOG.info("labmech: binding ports on flat physical network %s on every host", PHYSNET)

    @property
    def connectivity(self):
        return portbindings.CONNECTIVITY_L2

    def bind_port(self, context):
        for seg in context.segments_to_bind:
            if seg[api.NETWORK_TYPE] == constants.TYPE_FLAT and seg[api.PHYSICAL_NETWORK] == PHYSNET:
                context.set_binding(seg[api.ID], portbindings.VIF_TYPE_OTHER,
                                    {portbindings.CAP_PORT_FILTER: False},
                                    status=constants.PORT_STATUS_ACTIVE)
                LOG.info("labmech: port %s bound on host %s", context.current["id"], context.host)
                return
