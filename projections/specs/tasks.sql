-- tasks: the KohakuRiver cluster manager's Task table (command tasks and VPS sessions).
--
-- Seed: ../shared/seeds/kohakuriver-db-models.md (db/task.py, Peewee on SQLite).
-- Columns are the seed's, in the seed's category order (identity, ownership,
-- specification, Docker, VPS, status, results, timestamps), with the types Peewee
-- gives them on SQLite: CharField -> VARCHAR(255), TextField -> TEXT,
-- IntegerField/BigIntegerField -> INTEGER, BooleanField -> INTEGER,
-- DateTimeField -> DATETIME (holding ISO-8601 UTC text here).  Peewee keeps
-- defaults in Python; they are SQL defaults here so that a row never depends on
-- which handler created it.
--
-- Stream:  task-<task_id>     (task_id is the snowflake id, a 64-bit integer)
-- Events:  TaskSubmitted, TaskApproved, TaskRejected, TaskAssigned, TaskStarted,
--          TaskAssignmentSuspected, TaskAssignmentConfirmed, TaskPaused, TaskResumed,
--          TaskCompleted, TaskFailed, TaskKilled, TaskLost, TaskStopped
-- Status:  pending_approval -> pending | rejected
--          pending -> assigning -> running -> completed | failed | killed | killed_oom | stopped
--          running <-> paused;   any unfinished state -> lost | killed | failed
--
-- Every event may carry `at` (ISO-8601 UTC text); without it the commit time is used.
-- @projection tasks
-- History (docs/audit.md): who approved a task and when, which node it was assigned to.
-- @history tasks

CREATE TABLE IF NOT EXISTS tasks (
    -- identity
    task_id INTEGER NOT NULL PRIMARY KEY,
    task_type VARCHAR(255) NOT NULL DEFAULT 'command',
    batch_id INTEGER,
    name VARCHAR(255),
    -- ownership and approval (approval_status NULL = auto-approved)
    owner_id INTEGER,
    approval_status VARCHAR(255),
    approved_by_id INTEGER,
    approved_at DATETIME,
    rejection_reason TEXT,
    -- specification; arguments, env_vars and required_gpus are JSON text
    command TEXT NOT NULL,
    arguments TEXT NOT NULL DEFAULT '[]',
    env_vars TEXT NOT NULL DEFAULT '{}',
    required_cores INTEGER NOT NULL DEFAULT 1,
    required_gpus TEXT NOT NULL DEFAULT '[]',
    required_memory_bytes INTEGER,
    target_numa_node_id INTEGER,
    -- Docker; docker_mount_dirs is JSON text
    container_name VARCHAR(255),
    registry_image VARCHAR(255),
    docker_image_name VARCHAR(255),
    docker_privileged INTEGER NOT NULL DEFAULT 0,
    docker_mount_dirs TEXT DEFAULT '[]',
    -- VPS
    ssh_port INTEGER,
    vps_backend VARCHAR(255) NOT NULL DEFAULT 'docker',
    vm_image VARCHAR(255),
    vm_disk_size VARCHAR(255),
    vm_ip VARCHAR(255),
    -- status
    status VARCHAR(255) NOT NULL DEFAULT 'pending',
    assigned_node VARCHAR(255),
    assignment_suspicion_count INTEGER NOT NULL DEFAULT 0,
    -- results
    exit_code INTEGER,
    error_message TEXT,
    stdout_path TEXT NOT NULL DEFAULT '',
    stderr_path TEXT NOT NULL DEFAULT '',
    -- timestamps
    submitted_at DATETIME NOT NULL,
    started_at DATETIME,
    completed_at DATETIME
);

-- The indexes db/task.py declares (index=True), named as Peewee names them.
CREATE INDEX IF NOT EXISTS tasks_batch_id ON tasks (batch_id);
CREATE INDEX IF NOT EXISTS tasks_owner_id ON tasks (owner_id);
CREATE INDEX IF NOT EXISTS tasks_approval_status ON tasks (approval_status);
CREATE INDEX IF NOT EXISTS tasks_assigned_node ON tasks (assigned_node);

-- @on TaskSubmitted
-- A user-role submission arrives with approval_status 'pending' and waits for an
-- operator; operators' and admins' tasks arrive without it (auto-approved).
INSERT INTO tasks (task_id, task_type, batch_id, name,
                   owner_id, approval_status,
                   command, arguments, env_vars, required_cores, required_gpus,
                   required_memory_bytes, target_numa_node_id,
                   container_name, registry_image, docker_image_name, docker_privileged,
                   docker_mount_dirs,
                   ssh_port, vps_backend, vm_image, vm_disk_size,
                   status, stdout_path, stderr_path, submitted_at)
VALUES (:task_id, COALESCE(:task_type, 'command'), :batch_id, :name,
        :owner_id, :approval_status,
        :command, COALESCE(:arguments, '[]'), COALESCE(:env_vars, '{}'),
        COALESCE(:required_cores, 1), COALESCE(:required_gpus, '[]'),
        :required_memory_bytes, :target_numa_node_id,
        :container_name, :registry_image, :docker_image_name, COALESCE(:docker_privileged, 0),
        COALESCE(:docker_mount_dirs, '[]'),
        :ssh_port, COALESCE(:vps_backend, 'docker'), :vm_image, :vm_disk_size,
        CASE WHEN :approval_status = 'pending' THEN 'pending_approval' ELSE 'pending' END,
        COALESCE(:stdout_path, ''), COALESCE(:stderr_path, ''), COALESCE(:at, @time));

-- @on TaskApproved
UPDATE tasks
   SET approval_status = 'approved',
       approved_by_id = :approved_by_id,
       approved_at = COALESCE(:at, @time),
       status = 'pending'
 WHERE task_id = :task_id AND status = 'pending_approval';

-- @on TaskRejected
-- approved_by_id / approved_at record the review whichever way it went.
UPDATE tasks
   SET approval_status = 'rejected',
       approved_by_id = :rejected_by_id,
       approved_at = COALESCE(:at, @time),
       rejection_reason = :rejection_reason,
       status = 'rejected'
 WHERE task_id = :task_id AND status = 'pending_approval';

-- @on TaskAssigned
UPDATE tasks
   SET status = 'assigning',
       assigned_node = :assigned_node
 WHERE task_id = :task_id AND status = 'pending';

-- @on TaskStarted
-- mark_running(node): the runner reports the container (or VM) it started.
UPDATE tasks
   SET status = 'running',
       assigned_node = COALESCE(:assigned_node, assigned_node),
       started_at = COALESCE(:at, @time),
       container_name = COALESCE(:container_name, container_name),
       docker_image_name = COALESCE(:docker_image_name, docker_image_name),
       ssh_port = COALESCE(:ssh_port, ssh_port),
       vm_ip = COALESCE(:vm_ip, vm_ip),
       stdout_path = COALESCE(:stdout_path, stdout_path),
       stderr_path = COALESCE(:stderr_path, stderr_path)
 WHERE task_id = :task_id AND status IN ('pending', 'assigning');

-- @on TaskAssignmentSuspected
-- The runner's heartbeat did not list a task the host believes it runs; the host
-- declares the task lost after a few of these (TaskLost).
UPDATE tasks
   SET assignment_suspicion_count = assignment_suspicion_count + 1
 WHERE task_id = :task_id AND status IN ('assigning', 'running', 'paused');

-- @on TaskAssignmentConfirmed
UPDATE tasks
   SET assignment_suspicion_count = 0
 WHERE task_id = :task_id AND status IN ('assigning', 'running', 'paused');

-- @on TaskPaused
UPDATE tasks SET status = 'paused' WHERE task_id = :task_id AND status = 'running';

-- @on TaskResumed
UPDATE tasks SET status = 'running' WHERE task_id = :task_id AND status = 'paused';

-- @on TaskCompleted
UPDATE tasks
   SET status = 'completed',
       exit_code = COALESCE(:exit_code, 0),
       completed_at = COALESCE(:at, @time)
 WHERE task_id = :task_id AND status = 'running';

-- @on TaskFailed
-- Also before it ran: a runner that cannot pull the image fails the launch.
UPDATE tasks
   SET status = 'failed',
       exit_code = COALESCE(:exit_code, 1),
       error_message = :error_message,
       completed_at = COALESCE(:at, @time)
 WHERE task_id = :task_id AND status IN ('pending', 'assigning', 'running', 'paused');

-- @on TaskKilled
-- mark_killed(oom): the runner's OOM report arrives as oom = true.
UPDATE tasks
   SET status = CASE WHEN COALESCE(:oom, 0) THEN 'killed_oom' ELSE 'killed' END,
       exit_code = COALESCE(:exit_code, exit_code),
       error_message = COALESCE(:error_message, error_message),
       completed_at = COALESCE(:at, @time)
 WHERE task_id = :task_id
   AND status IN ('pending_approval', 'pending', 'assigning', 'running', 'paused');

-- @on TaskLost
UPDATE tasks
   SET status = 'lost',
       error_message = COALESCE(:error_message, error_message),
       completed_at = COALESCE(:at, @time)
 WHERE task_id = :task_id AND status IN ('pending', 'assigning', 'running', 'paused');

-- @on TaskStopped
-- A graceful stop (VPS sessions).
UPDATE tasks
   SET status = 'stopped',
       exit_code = COALESCE(:exit_code, exit_code),
       completed_at = COALESCE(:at, @time)
 WHERE task_id = :task_id AND status IN ('running', 'paused');
