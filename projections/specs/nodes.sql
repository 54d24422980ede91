-- nodes: the KohakuRiver cluster manager's Node table (compute nodes and their health).
--
-- Seed: ../shared/seeds/kohakuriver-db-models.md (db/node.py, Peewee on SQLite).
-- Columns are the seed's, in its category order (identity, hardware, health,
-- topology, VM, version), typed as Peewee types them on SQLite.  numa_topology,
-- gpu_info and vfio_gpus are JSON text (NULL until a runner reports them).
--
-- Stream:  node-<hostname>
-- Events:  NodeRegistered, NodeHeartbeatReceived, NodeMarkedOffline
-- Status:  online <-> offline  (a heartbeat or a new registration brings a node back)
--
-- Every event may carry `at` (ISO-8601 UTC text); without it the commit time is used.
-- @projection nodes

CREATE TABLE IF NOT EXISTS nodes (
    -- identity
    hostname VARCHAR(255) NOT NULL PRIMARY KEY,
    url VARCHAR(255) NOT NULL,
    -- hardware
    total_cores INTEGER NOT NULL,
    memory_total_bytes INTEGER,
    -- health (written by heartbeats)
    status VARCHAR(255) NOT NULL DEFAULT 'online',
    last_heartbeat DATETIME NOT NULL,
    cpu_percent REAL,
    memory_percent REAL,
    memory_used_bytes INTEGER,
    current_avg_temp REAL,
    -- topology: {"0": [0,1,2,3], ...} and [{"id":0,"name":"A100",...}, ...]
    numa_topology TEXT,
    gpu_info TEXT,
    -- VM capability: [{"pci":"0000:01:00.0",...}, ...]
    vm_capable INTEGER NOT NULL DEFAULT 0,
    vfio_gpus TEXT,
    -- version
    runner_version VARCHAR(255)
);

-- @on NodeRegistered
-- A runner registers at every start, so this is an upsert: a restarted runner
-- refreshes its hardware, topology and version, and comes back online.  The
-- last heartbeat's readings stay until the next heartbeat.
INSERT INTO nodes (hostname, url, total_cores, memory_total_bytes, status, last_heartbeat,
                   numa_topology, gpu_info, vm_capable, vfio_gpus, runner_version)
VALUES (:hostname, :url, :total_cores, :memory_total_bytes, 'online', COALESCE(:at, @time),
        :numa_topology, :gpu_info, COALESCE(:vm_capable, 0), :vfio_gpus, :runner_version)
ON CONFLICT (hostname) DO UPDATE SET
    url = excluded.url,
    total_cores = excluded.total_cores,
    memory_total_bytes = excluded.memory_total_bytes,
    status = 'online',
    last_heartbeat = excluded.last_heartbeat,
    numa_topology = excluded.numa_topology,
    gpu_info = excluded.gpu_info,
    vm_capable = excluded.vm_capable,
    vfio_gpus = excluded.vfio_gpus,
    runner_version = excluded.runner_version;

-- @on NodeHeartbeatReceived
-- The readings are the latest ones: a reading the heartbeat lacks (no sensor)
-- becomes NULL rather than keeping a stale value.  gpu_info is refreshed when
-- the heartbeat carries it (utilisation, memory in use).
UPDATE nodes
   SET status = 'online',
       last_heartbeat = COALESCE(:at, @time),
       cpu_percent = :cpu_percent,
       memory_percent = :memory_percent,
       memory_used_bytes = :memory_used_bytes,
       current_avg_temp = :current_avg_temp,
       gpu_info = COALESCE(:gpu_info, gpu_info)
 WHERE hostname = :hostname;

-- @on NodeMarkedOffline
-- The host's health check saw no heartbeat within its timeout.
UPDATE nodes SET status = 'offline' WHERE hostname = :hostname;
