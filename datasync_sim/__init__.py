"""DataSync API simulator: a local stand-in for the live API of ../shared/datasync-api.md.

    from datasync_sim import SimServer, profile_config
    with SimServer(profile_config("fast", events=20_000, seed=7)) as sim:
        requests.get(sim.url + "/api/v1/events", headers={"X-API-Key": "ds_" + "0" * 32})
"""

from .config import PROFILES, SimConfig, profile_config
from .server import SimServer

__all__ = ["PROFILES", "SimConfig", "SimServer", "profile_config"]
