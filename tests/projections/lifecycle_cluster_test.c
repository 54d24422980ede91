/* The KohakuRiver cluster manager's built-in projections (seed
 * kohakuriver-db-models.md) driven through the C API, whole rows compared
 * after every event: `tasks` through every transition of docs/events.md
 * (approval, rejection, assignment, suspicion, start, pause/resume,
 * completion, failure, kill and OOM kill, loss, VPS stop) and the events the
 * guards ignore; `nodes` with registration upserts, heartbeats, offline and
 * back; `auth`'s seven tables and its view through registration by
 * invitation, memberships, sessions, tokens, VPS grants and deletions. */
#include "lifecycle.h"

/* ------------------------------------------------------------------ tasks */

#define T1 "7402188112806297600"

/* A task as a minimal TaskSubmitted leaves it: every default of the spec. */
static json_t *task_model(const char *id, const char *command, const char *submitted_at) {
    return row_new("{'task_id':%s,'task_type':'command','batch_id':null,'name':null,"
                   "'owner_id':null,'approval_status':null,'approved_by_id':null,'approved_at':null,"
                   "'rejection_reason':null,"
                   "'command':'%s','arguments':[],'env_vars':{},'required_cores':1,'required_gpus':[],"
                   "'required_memory_bytes':null,'target_numa_node_id':null,"
                   "'container_name':null,'registry_image':null,'docker_image_name':null,'docker_privileged':false,"
                   "'docker_mount_dirs':[],"
                   "'ssh_port':null,'vps_backend':'docker','vm_image':null,'vm_disk_size':null,'vm_ip':null,"
                   "'status':'pending','assigned_node':null,'assignment_suspicion_count':0,"
                   "'exit_code':null,'error_message':null,'stdout_path':'','stderr_path':'',"
                   "'submitted_at':'%s','started_at':null,'completed_at':null}",
                   id, command, submitted_at);
}

/* Events a finished task ignores. */
#define TERMINAL_IGNORES                                                  \
    {"TaskFailed", "'exit_code':2,'error_message':'late'", "{}"},         \
    {"TaskKilled", "'oom':true,'exit_code':137", "{}"},                   \
    {"TaskLost", "'error_message':'late'", "{}"},                         \
    {"TaskStopped", "'exit_code':0", "{}"},                               \
    {"TaskCompleted", "'exit_code':0", "{}"},                             \
    {"TaskPaused", "", "{}"},                                             \
    {"TaskResumed", "", "{}"},                                            \
    {"TaskStarted", "'assigned_node':'kr-late'", "{}"},                   \
    {"TaskAssigned", "'assigned_node':'kr-late'", "{}"},                  \
    {"TaskApproved", "'approved_by_id':9", "{}"},                         \
    {"TaskRejected", "'rejected_by_id':9,'rejection_reason':'x'", "{}"},  \
    {"TaskAssignmentSuspected", "", "{}"},                                \
    {"TaskAssignmentConfirmed", "", "{}"}

/* Submitted for approval, approved, assigned, suspected and confirmed,
 * started, paused and resumed, completed; then nothing moves it. */
static const step T1_STEPS[] = {
    /* waiting for approval: no scheduling event applies */
    {"TaskAssigned", "'assigned_node':'kr-gpu-01'", "{}"},
    {"TaskStarted", "'assigned_node':'kr-gpu-01'", "{}"},
    {"TaskFailed", "'error_message':'x'", "{}"},
    {"TaskLost", "", "{}"},
    {"TaskPaused", "", "{}"},
    {"TaskCompleted", "", "{}"},
    {"TaskStopped", "", "{}"},
    {"TaskAssignmentSuspected", "", "{}"},
    {"TaskApproved", "'approved_by_id':1",
     "{'approval_status':'approved','approved_by_id':1,'approved_at':'$AT','status':'pending'}"},
    /* reviewed once: a second review changes nothing */
    {"TaskApproved", "'approved_by_id':2", "{}"},
    {"TaskRejected", "'rejected_by_id':2,'rejection_reason':'too late'", "{}"},
    {"TaskResumed", "", "{}"},
    {"TaskAssignmentSuspected", "", "{}"},
    {"TaskAssigned", "'assigned_node':'kr-gpu-01'", "{'status':'assigning','assigned_node':'kr-gpu-01'}"},
    {"TaskAssigned", "'assigned_node':'kr-gpu-02'", "{}"},
    {"TaskAssignmentSuspected", "'assigned_node':'kr-gpu-01'", "{'assignment_suspicion_count':1}"},
    {"TaskAssignmentSuspected", "'assigned_node':'kr-gpu-01'", "{'assignment_suspicion_count':2}"},
    {"TaskAssignmentConfirmed", "", "{'assignment_suspicion_count':0}"},
    {"TaskPaused", "", "{}"},
    {"TaskCompleted", "", "{}"},
    {"TaskStarted",
     "'container_name':'kohakuriver-task-" T1 "','docker_image_name':'kohakuriver/acme-train:2.1'",
     "{'status':'running','started_at':'$AT','container_name':'kohakuriver-task-" T1 "',"
     "'docker_image_name':'kohakuriver/acme-train:2.1'}"},
    {"TaskStarted", "'assigned_node':'kr-gpu-02'", "{}"},
    {"TaskAssignmentSuspected", "", "{'assignment_suspicion_count':1}"},
    {"TaskResumed", "", "{}"},
    {"TaskPaused", "", "{'status':'paused'}"},
    {"TaskPaused", "", "{}"},
    {"TaskCompleted", "'exit_code':0", "{}"},
    {"TaskStarted", "", "{}"},
    {"TaskAssignmentSuspected", "", "{'assignment_suspicion_count':2}"},
    {"TaskAssignmentConfirmed", "", "{'assignment_suspicion_count':0}"},
    {"TaskResumed", "", "{'status':'running'}"},
    {"TaskResumed", "", "{}"},
    {"TaskAssignmentSuspected", "", "{'assignment_suspicion_count':1}"},
    /* mark_completed: exit_code defaults to 0 */
    {"TaskCompleted", "", "{'status':'completed','exit_code':0,'completed_at':'$AT'}"},
    TERMINAL_IGNORES,
};

static void task_full_lifecycle(fx *f) {
    const char *at = tick(f);
    CHECK_RC(ev_x(f, "task-" T1, EVL_REV_NO_STREAM, "TaskSubmitted",
                  "{'task_id':" T1 ",'task_type':'command','batch_id':7402188112806297000,'name':'train-resnet50',"
                  "'owner_id':3,'approval_status':'pending','command':'python',"
                  "'arguments':['train.py','--lr','0.01','--epochs','90'],"
                  "'env_vars':{'CUDA_VISIBLE_DEVICES':'0,1','WANDB_MODE':'offline'},"
                  "'required_cores':16,'required_gpus':[0,1],'required_memory_bytes':68719476736,"
                  "'target_numa_node_id':1,'registry_image':'ghcr.io/acme/train:2.1','docker_privileged':false,"
                  "'docker_mount_dirs':['/data','/models'],'vps_backend':'docker',"
                  "'stdout_path':'/shared/logs/" T1 "/stdout.log','stderr_path':'/shared/logs/" T1 "/stderr.log',"
                  "'at':'%s'}", at),
             EVL_OK);
    /* the same submission again is a conflict at the log */
    CHECK_RC(ev_x(f, "task-" T1, EVL_REV_NO_STREAM, "TaskSubmitted", "{'task_id':" T1 ",'command':'ls'}"),
             EVL_ECONFLICT);
    sync_proj(f, "tasks");
    json_t *m = task_model(T1, "python", at);
    row_set(m, "{'batch_id':7402188112806297000,'name':'train-resnet50','owner_id':3,'approval_status':'pending',"
               "'arguments':['train.py','--lr','0.01','--epochs','90'],"
               "'env_vars':{'CUDA_VISIBLE_DEVICES':'0,1','WANDB_MODE':'offline'},"
               "'required_cores':16,'required_gpus':[0,1],'required_memory_bytes':68719476736,"
               "'target_numa_node_id':1,'registry_image':'ghcr.io/acme/train:2.1',"
               "'docker_mount_dirs':['/data','/models'],'status':'pending_approval',"
               "'stdout_path':'/shared/logs/" T1 "/stdout.log','stderr_path':'/shared/logs/" T1 "/stderr.log'}");
    const char *sql = "SELECT * FROM tasks WHERE task_id = " T1;
    expect_row(f, "tasks", sql, m);
    WALK(f, "tasks", sql, "task-" T1, "'task_id':" T1, m, T1_STEPS);
    json_decref(m);
}

/* pending_approval -> rejected; a rejected task is finished. */
static const step REJECT_STEPS[] = {
    {"TaskRejected", "'rejected_by_id':1,'rejection_reason':'privileged containers need an operator'",
     "{'approval_status':'rejected','approved_by_id':1,'approved_at':'$AT',"
     "'rejection_reason':'privileged containers need an operator','status':'rejected'}"},
    TERMINAL_IGNORES,
};

/* Auto-approved (no approval_status), started straight from pending
 * (mark_running(node)), failed with the default exit code 1. */
static const step FAIL_RUNNING_STEPS[] = {
    {"TaskStarted", "'assigned_node':'kr-cpu-03','stdout_path':'/tmp/o','stderr_path':'/tmp/e'",
     "{'status':'running','assigned_node':'kr-cpu-03','started_at':'$AT','stdout_path':'/tmp/o',"
     "'stderr_path':'/tmp/e'}"},
    {"TaskFailed", "'error_message':'CUDA error: out of memory'",
     "{'status':'failed','exit_code':1,'error_message':'CUDA error: out of memory','completed_at':'$AT'}"},
    TERMINAL_IGNORES,
};

/* running -> killed_oom (mark_killed(oom)) */
static const step OOM_STEPS[] = {
    {"TaskAssigned", "'assigned_node':'kr-gpu-02'", "{'status':'assigning','assigned_node':'kr-gpu-02'}"},
    {"TaskStarted", "", "{'status':'running','started_at':'$AT'}"},
    {"TaskKilled", "'oom':true,'exit_code':137,'error_message':'Container killed: out of memory'",
     "{'status':'killed_oom','exit_code':137,'error_message':'Container killed: out of memory','completed_at':'$AT'}"},
    TERMINAL_IGNORES,
};

/* running -> killed (oom false, nothing else reported: exit_code stays NULL) */
static const step KILL_RUNNING_STEPS[] = {
    {"TaskAssigned", "'assigned_node':'kr-gpu-02'", "{'status':'assigning','assigned_node':'kr-gpu-02'}"},
    {"TaskStarted", "", "{'status':'running','started_at':'$AT'}"},
    {"TaskKilled", "'oom':false", "{'status':'killed','completed_at':'$AT'}"},
    TERMINAL_IGNORES,
};

/* pending_approval -> killed (the owner withdraws it) */
static const step KILL_UNAPPROVED_STEPS[] = {
    {"TaskKilled", "'error_message':'withdrawn'", "{'status':'killed','error_message':'withdrawn','completed_at':'$AT'}"},
    TERMINAL_IGNORES,
};

/* pending -> killed; pending -> lost; pending -> failed (image pull) */
static const step KILL_PENDING_STEPS[] = {
    {"TaskKilled", "", "{'status':'killed','completed_at':'$AT'}"},
    TERMINAL_IGNORES,
};
static const step LOST_PENDING_STEPS[] = {
    {"TaskLost", "", "{'status':'lost','completed_at':'$AT'}"},
    TERMINAL_IGNORES,
};
static const step FAIL_PENDING_STEPS[] = {
    {"TaskFailed", "'exit_code':125,'error_message':'pull access denied for acme/secret'",
     "{'status':'failed','exit_code':125,'error_message':'pull access denied for acme/secret','completed_at':'$AT'}"},
    TERMINAL_IGNORES,
};

/* assigning -> lost after suspicions (mark_lost); assigning -> failed */
static const step LOST_ASSIGNING_STEPS[] = {
    {"TaskAssigned", "'assigned_node':'kr-gpu-04'", "{'status':'assigning','assigned_node':'kr-gpu-04'}"},
    {"TaskAssignmentSuspected", "", "{'assignment_suspicion_count':1}"},
    {"TaskAssignmentSuspected", "", "{'assignment_suspicion_count':2}"},
    {"TaskAssignmentSuspected", "", "{'assignment_suspicion_count':3}"},
    {"TaskLost", "'error_message':'runner kr-gpu-04 never reported the task'",
     "{'status':'lost','error_message':'runner kr-gpu-04 never reported the task','completed_at':'$AT'}"},
    TERMINAL_IGNORES,
};
static const step FAIL_ASSIGNING_STEPS[] = {
    {"TaskAssigned", "'assigned_node':'kr-gpu-04'", "{'status':'assigning','assigned_node':'kr-gpu-04'}"},
    {"TaskFailed", "'exit_code':1", "{'status':'failed','exit_code':1,'completed_at':'$AT'}"},
    TERMINAL_IGNORES,
};

/* paused -> lost, paused -> killed, paused -> failed */
#define RUN_AND_PAUSE                                                                            \
    {"TaskAssigned", "'assigned_node':'kr-gpu-05'", "{'status':'assigning','assigned_node':'kr-gpu-05'}"}, \
    {"TaskStarted", "", "{'status':'running','started_at':'$AT'}"},                              \
    {"TaskPaused", "", "{'status':'paused'}"}
static const step LOST_PAUSED_STEPS[] = {
    RUN_AND_PAUSE,
    {"TaskLost", "", "{'status':'lost','completed_at':'$AT'}"},
    TERMINAL_IGNORES,
};
static const step KILL_PAUSED_STEPS[] = {
    RUN_AND_PAUSE,
    {"TaskKilled", "'exit_code':143", "{'status':'killed','exit_code':143,'completed_at':'$AT'}"},
    TERMINAL_IGNORES,
};
static const step FAIL_PAUSED_STEPS[] = {
    RUN_AND_PAUSE,
    {"TaskFailed", "'exit_code':2,'error_message':'checkpoint lost'",
     "{'status':'failed','exit_code':2,'error_message':'checkpoint lost','completed_at':'$AT'}"},
    TERMINAL_IGNORES,
};

/* VPS sessions: started with the VM's address, paused, stopped (no exit
 * code); a docker VPS stopped from running with an exit code.  A pending
 * task cannot be stopped. */
static const step VPS_QEMU_STEPS[] = {
    {"TaskStopped", "", "{}"},
    {"TaskAssigned", "'assigned_node':'kr-vm-01'", "{'status':'assigning','assigned_node':'kr-vm-01'}"},
    {"TaskStopped", "", "{}"},
    {"TaskStarted", "'ssh_port':22001,'vm_ip':'10.128.0.17'",
     "{'status':'running','started_at':'$AT','ssh_port':22001,'vm_ip':'10.128.0.17'}"},
    {"TaskPaused", "", "{'status':'paused'}"},
    {"TaskStopped", "", "{'status':'stopped','completed_at':'$AT'}"},
    TERMINAL_IGNORES,
};
static const step VPS_DOCKER_STEPS[] = {
    {"TaskStarted", "'assigned_node':'kr-gpu-01','container_name':'kohakuriver-vps-9','ssh_port':22002",
     "{'status':'running','assigned_node':'kr-gpu-01','started_at':'$AT','container_name':'kohakuriver-vps-9',"
     "'ssh_port':22002}"},
    {"TaskStopped", "'exit_code':0", "{'status':'stopped','exit_code':0,'completed_at':'$AT'}"},
    TERMINAL_IGNORES,
};

/* Submit task @p id with @p fields (besides task_id and at), check the row
 * (defaults plus @p changes), then walk @p steps. */
static void task_path(fx *f, const char *id, const char *fields, const char *changes, const step *steps, size_t n) {
    char stream[64], key[64], sql[128];
    snprintf(stream, sizeof stream, "task-%s", id);
    snprintf(key, sizeof key, "'task_id':%s", id);
    snprintf(sql, sizeof sql, "SELECT * FROM tasks WHERE task_id = %s", id);
    const char *at = tick(f);
    CHECK_RC(ev_x(f, stream, EVL_REV_NO_STREAM, "TaskSubmitted", "{%s,'at':'%s',%s}", key, at, fields), EVL_OK);
    sync_proj(f, "tasks");
    json_t *spec = row_new("{%s}", fields);
    json_t *m = task_model(id, json_string_value(json_object_get(spec, "command")), at);
    json_decref(spec);
    row_patch(m, changes, at);
    snprintf(lc_context, sizeof lc_context, "%s submitted", stream);
    expect_row(f, "tasks", sql, m);
    lc_context[0] = 0;
    walk(f, "tasks", sql, stream, key, m, steps, n);
    json_decref(m);
}
#define TASK_PATH(f, id, fields, changes, steps) \
    task_path(f, id, fields, changes, steps, sizeof(steps) / sizeof((steps)[0]))

static void tasks(fx *f) {
    task_full_lifecycle(f);
    TASK_PATH(f, "101", "'owner_id':5,'approval_status':'pending','command':'bash','docker_privileged':true",
              "{'owner_id':5,'approval_status':'pending','docker_privileged':true,'status':'pending_approval'}",
              REJECT_STEPS);
    TASK_PATH(f, "102", "'command':'python','arguments':['eval.py'],'required_gpus':[3]",
              "{'arguments':['eval.py'],'required_gpus':[3]}", FAIL_RUNNING_STEPS);
    TASK_PATH(f, "103", "'command':'python','required_cores':32,'required_memory_bytes':1073741824",
              "{'required_cores':32,'required_memory_bytes':1073741824}", OOM_STEPS);
    TASK_PATH(f, "104", "'command':'sleep','arguments':['3600']", "{'arguments':['3600']}", KILL_RUNNING_STEPS);
    TASK_PATH(f, "105", "'command':'sleep','approval_status':'pending','owner_id':7",
              "{'approval_status':'pending','owner_id':7,'status':'pending_approval'}", KILL_UNAPPROVED_STEPS);
    TASK_PATH(f, "106", "'command':'true'", "{}", KILL_PENDING_STEPS);
    TASK_PATH(f, "107", "'command':'true'", "{}", LOST_PENDING_STEPS);
    TASK_PATH(f, "108", "'command':'python','registry_image':'acme/secret:1'", "{'registry_image':'acme/secret:1'}",
              FAIL_PENDING_STEPS);
    TASK_PATH(f, "109", "'command':'true','target_numa_node_id':0", "{'target_numa_node_id':0}", LOST_ASSIGNING_STEPS);
    TASK_PATH(f, "110", "'command':'true','batch_id':42", "{'batch_id':42}", FAIL_ASSIGNING_STEPS);
    TASK_PATH(f, "111", "'command':'true'", "{}", LOST_PAUSED_STEPS);
    TASK_PATH(f, "112", "'command':'true'", "{}", KILL_PAUSED_STEPS);
    TASK_PATH(f, "113", "'command':'true'", "{}", FAIL_PAUSED_STEPS);
    TASK_PATH(f, "114",
              "'task_type':'vps','name':'dev-box','owner_id':3,'command':'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 bob@laptop',"
              "'required_cores':4,'required_gpus':[0],'vps_backend':'qemu','vm_image':'ubuntu-24.04',"
              "'vm_disk_size':'50G'",
              "{'task_type':'vps','name':'dev-box','owner_id':3,'required_cores':4,'required_gpus':[0],"
              "'vps_backend':'qemu','vm_image':'ubuntu-24.04','vm_disk_size':'50G'}",
              VPS_QEMU_STEPS);
    TASK_PATH(f, "115",
              "'task_type':'vps','command':'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 carol@desk','docker_privileged':true,"
              "'docker_mount_dirs':[],'env_vars':{'TZ':'UTC'},'registry_image':'ubuntu:24.04'",
              "{'task_type':'vps','docker_privileged':true,'env_vars':{'TZ':'UTC'},'registry_image':'ubuntu:24.04'}",
              VPS_DOCKER_STEPS);

    /* no `at`: submitted_at, started_at, completed_at are the commit times */
    uint64_t p = ev(f, "task-120", "TaskSubmitted", "{'task_id':120,'command':'date'}");
    char t1[40], t2[40], t3[40];
    time_of(f, p, t1);
    time_of(f, ev(f, "task-120", "TaskStarted", "{'task_id':120,'assigned_node':'kr-cpu-01'}"), t2);
    time_of(f, ev(f, "task-120", "TaskCompleted", "{'task_id':120,'exit_code':3}"), t3);
    sync_proj(f, "tasks");
    json_t *m = task_model("120", "date", t1);
    row_set(m, "{'status':'completed','assigned_node':'kr-cpu-01','started_at':'%s','exit_code':3,'completed_at':'%s'}",
            t2, t3);
    expect_row(f, "tasks", "SELECT * FROM tasks WHERE task_id = 120", m);
    json_decref(m);

    /* events for a task the table does not know are ignored */
    static const step GHOST[] = {
        {"TaskApproved", "'approved_by_id':1", "{}"}, {"TaskAssigned", "'assigned_node':'x'", "{}"},
        {"TaskStarted", "", "{}"}, {"TaskCompleted", "", "{}"}, {"TaskKilled", "", "{}"}, TERMINAL_IGNORES,
    };
    for (size_t i = 0; i < sizeof GHOST / sizeof GHOST[0]; i++)
        ev(f, "task-999", GHOST[i].type, "{'task_id':999%s%s}", GHOST[i].data[0] ? "," : "", GHOST[i].data);
    expect_live(f, "tasks");
    expect_table(f, "tasks", "SELECT task_id FROM tasks WHERE task_id = 999", "[]");
    CHECK(q_int(f, "tasks", "SELECT count(*) FROM tasks") == 17);
    expect_table(f, "tasks", "SELECT status, count(*) AS n FROM tasks GROUP BY status ORDER BY status",
                 "[{'status':'completed','n':2},{'status':'failed','n':4},{'status':'killed','n':4},"
                 "{'status':'killed_oom','n':1},{'status':'lost','n':3},{'status':'rejected','n':1},"
                 "{'status':'stopped','n':2}]");
}

/* ------------------------------------------------------------------ nodes */

static void nodes(fx *f) {
    const char *sql = "SELECT * FROM nodes WHERE hostname = 'kr-gpu-01'";
    const char *at = tick(f);
    ev(f, "node-kr-gpu-01", "NodeRegistered",
       "{'hostname':'kr-gpu-01','url':'http://10.0.0.11:8001','total_cores':64,'memory_total_bytes':540861460480,"
       "'numa_topology':{'0':[0,1,2,3],'1':[4,5,6,7]},"
       "'gpu_info':[{'id':0,'name':'NVIDIA A100-SXM4-80GB','memory_total_mib':81920},"
       "{'id':1,'name':'NVIDIA A100-SXM4-80GB','memory_total_mib':81920}],"
       "'vm_capable':true,'vfio_gpus':[{'pci':'0000:81:00.0','name':'NVIDIA A100'}],'runner_version':'0.4.2',"
       "'at':'%s'}", at);
    sync_proj(f, "nodes");
    json_t *m = row_new("{'hostname':'kr-gpu-01','url':'http://10.0.0.11:8001','total_cores':64,"
                        "'memory_total_bytes':540861460480,'status':'online','last_heartbeat':'%s',"
                        "'cpu_percent':null,'memory_percent':null,'memory_used_bytes':null,'current_avg_temp':null,"
                        "'numa_topology':{'0':[0,1,2,3],'1':[4,5,6,7]},"
                        "'gpu_info':[{'id':0,'name':'NVIDIA A100-SXM4-80GB','memory_total_mib':81920},"
                        "{'id':1,'name':'NVIDIA A100-SXM4-80GB','memory_total_mib':81920}],"
                        "'vm_capable':true,'vfio_gpus':[{'pci':'0000:81:00.0','name':'NVIDIA A100'}],"
                        "'runner_version':'0.4.2'}", at);
    expect_row(f, "nodes", sql, m);
    static const step HEALTH[] = {
        /* readings; gpu_info refreshed; current_max_temp is not a column */
        {"NodeHeartbeatReceived",
         "'cpu_percent':37.5,'memory_percent':41.25,'memory_used_bytes':223338299392,'current_avg_temp':54.5,"
         "'current_max_temp':71.0,'gpu_info':[{'id':0,'utilization':87},{'id':1,'utilization':12}]",
         "{'last_heartbeat':'$AT','cpu_percent':37.5,'memory_percent':41.25,'memory_used_bytes':223338299392,"
         "'current_avg_temp':54.5,'gpu_info':[{'id':0,'utilization':87},{'id':1,'utilization':12}]}"},
        /* no temperature sensor (nil) and no gpu_info: temp NULL, gpu_info kept;
         * integral percentages stay REAL */
        {"NodeHeartbeatReceived",
         "'cpu_percent':12,'memory_percent':40.5,'memory_used_bytes':219043332096,'current_avg_temp':null",
         "{'last_heartbeat':'$AT','cpu_percent':12.0,'memory_percent':40.5,'memory_used_bytes':219043332096,"
         "'current_avg_temp':null}"},
        {"NodeMarkedOffline", "", "{'status':'offline'}"},
        {"NodeMarkedOffline", "", "{}"},
        /* a heartbeat brings it back; readings it lacks become NULL */
        {"NodeHeartbeatReceived", "'cpu_percent':3.5",
         "{'status':'online','last_heartbeat':'$AT','cpu_percent':3.5,'memory_percent':null,'memory_used_bytes':null}"},
        {"NodeMarkedOffline", "", "{'status':'offline'}"},
        /* the runner restarts: a new registration refreshes hardware, topology,
         * VM capability and version, comes back online, keeps the readings */
        {"NodeRegistered",
         "'url':'http://10.0.0.11:8002','total_cores':128,'memory_total_bytes':1081722920960,"
         "'numa_topology':{'0':[0,1],'1':[2,3]},'gpu_info':[{'id':0,'name':'NVIDIA H100'}],"
         "'vm_capable':false,'runner_version':'0.5.0'",
         "{'url':'http://10.0.0.11:8002','total_cores':128,'memory_total_bytes':1081722920960,'status':'online',"
         "'last_heartbeat':'$AT','numa_topology':{'0':[0,1],'1':[2,3]},'gpu_info':[{'id':0,'name':'NVIDIA H100'}],"
         "'vm_capable':false,'vfio_gpus':null,'runner_version':'0.5.0'}"},
    };
    WALK(f, "nodes", sql, "node-kr-gpu-01", "'hostname':'kr-gpu-01'", m, HEALTH);
    json_decref(m);

    /* the least a runner sends, without `at`: defaults, commit time */
    uint64_t p = ev(f, "node-kr-cpu-01", "NodeRegistered", "{'hostname':'kr-cpu-01','url':'http://10.0.0.21:8001','total_cores':8}");
    char t[40];
    time_of(f, p, t);
    sync_proj(f, "nodes");
    expect_table(f, "nodes", "SELECT * FROM nodes WHERE hostname = 'kr-cpu-01'",
                 "[{'hostname':'kr-cpu-01','url':'http://10.0.0.21:8001','total_cores':8,'memory_total_bytes':null,"
                 "'status':'online','last_heartbeat':'%s','cpu_percent':null,'memory_percent':null,"
                 "'memory_used_bytes':null,'current_avg_temp':null,'numa_topology':null,'gpu_info':null,"
                 "'vm_capable':false,'vfio_gpus':null,'runner_version':null}]", t);
    /* an unknown node's heartbeat or timeout is ignored */
    ev(f, "node-kr-ghost", "NodeHeartbeatReceived", "{'hostname':'kr-ghost','cpu_percent':1.0}");
    ev(f, "node-kr-ghost", "NodeMarkedOffline", "{'hostname':'kr-ghost'}");
    expect_live(f, "nodes");
    expect_table(f, "nodes", "SELECT hostname, status FROM nodes ORDER BY hostname",
                 "[{'hostname':'kr-cpu-01','status':'online'},{'hostname':'kr-gpu-01','status':'online'}]");
}

/* ------------------------------------------------------------------- auth */

#define BCRYPT_A "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW"
#define BCRYPT_B "$2b$12$EXRkfkdmXn2gzds2SSitu.MW9.gAVqa9eLS1//RYtYCmB1eLHg.9q"
#define BCRYPT_C "$2b$12$KIXQJ1n7hP0Z8w1Qp4Yl0eW8Xo3yJm3fS8b7nR5sT1uV2wX3yZ4a6"
#define SHA256(c) c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c \
                  c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c
#define SHA3_512(c) SHA256(c) SHA256(c)

static void auth(fx *f) {
    /* an admin and a minimal user (defaults, commit time) */
    ev(f, "user-1", "UserRegistered", "{'id':1,'username':'admin','display_name':'Administrator',"
                                      "'password_hash':'" BCRYPT_A "','role':'admin','at':'2025-12-18T08:00:00Z'}");
    uint64_t p = ev(f, "user-2", "UserRegistered", "{'id':2,'username':'alice','password_hash':'" BCRYPT_B "'}");
    char t_alice[40];
    time_of(f, p, t_alice);
    sync_proj(f, "auth");
    expect_table(f, "auth", "SELECT * FROM users ORDER BY id",
                 "[{'id':1,'username':'admin','display_name':'Administrator','password_hash':'" BCRYPT_A "',"
                 "'is_active':true,'role':'admin','created_at':'2025-12-18T08:00:00Z'},"
                 "{'id':2,'username':'alice','display_name':null,'password_hash':'" BCRYPT_B "','is_active':true,"
                 "'role':'user','created_at':'%s'}]", t_alice);

    /* groups: limits map -> limits_json; defaults tier 0, limits {} */
    ev(f, "group-10", "GroupCreated", "{'id':10,'name':'ml-team','tier':2,"
                                      "'limits':{'max_tasks':8,'max_gpus':4,'max_vps':2},'at':'2025-12-18T08:01:00Z'}");
    ev(f, "group-11", "GroupCreated", "{'id':11,'name':'guests','at':'2025-12-18T08:02:00Z'}");
    sync_proj(f, "auth");
    expect_table(f, "auth", "SELECT * FROM groups ORDER BY id",
                 "[{'id':10,'name':'ml-team','tier':2,'limits_json':{'max_tasks':8,'max_gpus':4,'max_vps':2},"
                 "'created_at':'2025-12-18T08:01:00Z'},"
                 "{'id':11,'name':'guests','tier':0,'limits_json':{},'created_at':'2025-12-18T08:02:00Z'}]");
    ev(f, "group-11", "GroupUpdated", "{'id':11,'tier':1,'at':'2025-12-18T08:02:30Z'}");
    ev(f, "group-11", "GroupUpdated", "{'id':11,'name':'visitors','limits':{'max_tasks':1},'at':'2025-12-18T08:02:40Z'}");
    ev(f, "group-12", "GroupUpdated", "{'id':12,'name':'nobody'}"); /* unknown: ignored */
    sync_proj(f, "auth");
    expect_table(f, "auth", "SELECT * FROM groups WHERE id = 11",
                 "[{'id':11,'name':'visitors','tier':1,'limits_json':{'max_tasks':1},'created_at':'2025-12-18T08:02:00Z'}]");

    /* invitations: token_hash -> token; defaults role user, max_usage 1 */
    ev(f, "invitation-20", "InvitationCreated",
       "{'id':20,'token_hash':'" SHA256("a") "','role':'operator','group_id':10,'max_usage':2,"
       "'expires_at':'2025-12-25T00:00:00Z','created_by_id':1,'at':'2025-12-18T08:03:00Z'}");
    ev(f, "invitation-21", "InvitationCreated",
       "{'id':21,'token_hash':'" SHA256("b") "','expires_at':'2025-12-20T00:00:00Z','created_by_id':1,"
       "'at':'2025-12-18T08:04:00Z'}");
    ev(f, "invitation-22", "InvitationCreated",
       "{'id':22,'token_hash':'" SHA256("c") "','expires_at':'2025-12-21T00:00:00Z','created_by_id':2,"
       "'group_id':11,'at':'2025-12-18T08:05:00Z'}");
    sync_proj(f, "auth");
    json_t *inv = json_new(
        "[{'id':20,'token':'" SHA256("a") "','role':'operator','group_id':10,'max_usage':2,'usage_count':0,"
        "'expires_at':'2025-12-25T00:00:00Z','created_by_id':1,'created_at':'2025-12-18T08:03:00Z'},"
        "{'id':21,'token':'" SHA256("b") "','role':'user','group_id':null,'max_usage':1,'usage_count':0,"
        "'expires_at':'2025-12-20T00:00:00Z','created_by_id':1,'created_at':'2025-12-18T08:04:00Z'},"
        "{'id':22,'token':'" SHA256("c") "','role':'user','group_id':11,'max_usage':1,'usage_count':0,"
        "'expires_at':'2025-12-21T00:00:00Z','created_by_id':2,'created_at':'2025-12-18T08:05:00Z'}]");
    expect_json(f, "auth", "SELECT * FROM invitations ORDER BY id", inv);

    /* registration through an invitation: one atomic batch over three streams */
    static const lc_batch_ev REG_BOB[] = {
        {"user-3", EVL_REV_NO_STREAM, "UserRegistered",
         "{'id':3,'username':'bob','display_name':'Bob','password_hash':'" BCRYPT_C "','role':'operator',"
         "'invitation_id':20,'at':'2025-12-18T08:10:00Z'}"},
        {"invitation-20", EVL_REV_ANY, "InvitationRedeemed", "{'id':20,'user_id':3,'at':'2025-12-18T08:10:00Z'}"},
        {"group-10", EVL_REV_ANY, "GroupMemberAdded", "{'group_id':10,'user_id':3,'at':'2025-12-18T08:10:00Z'}"},
    };
    OK(batch(f, REG_BOB, 3));
    /* the same batch again: the user exists, so none of the three facts is added */
    CHECK_RC(batch(f, REG_BOB, 3), EVL_ECONFLICT);
    static const lc_batch_ev REG_CAROL[] = {
        {"user-4", EVL_REV_NO_STREAM, "UserRegistered",
         "{'id':4,'username':'carol','password_hash':'" BCRYPT_A "','invitation_id':21,'at':'2025-12-18T08:11:00Z'}"},
        {"invitation-21", EVL_REV_ANY, "InvitationRedeemed", "{'id':21,'user_id':4,'at':'2025-12-18T08:11:00Z'}"},
    };
    OK(batch(f, REG_CAROL, 2));
    /* invitation 21 is used up (max_usage 1): a further redemption changes nothing */
    ev(f, "invitation-21", "InvitationRedeemed", "{'id':21,'user_id':5,'at':'2025-12-18T08:12:00Z'}");
    sync_proj(f, "auth");
    json_object_set_new(json_array_get(inv, 0), "usage_count", json_integer(1));
    json_object_set_new(json_array_get(inv, 1), "usage_count", json_integer(1));
    expect_json(f, "auth", "SELECT * FROM invitations ORDER BY id", inv);
    expect_table(f, "auth", "SELECT * FROM users WHERE id >= 3 ORDER BY id",
                 "[{'id':3,'username':'bob','display_name':'Bob','password_hash':'" BCRYPT_C "','is_active':true,"
                 "'role':'operator','created_at':'2025-12-18T08:10:00Z'},"
                 "{'id':4,'username':'carol','display_name':null,'password_hash':'" BCRYPT_A "','is_active':true,"
                 "'role':'user','created_at':'2025-12-18T08:11:00Z'}]");

    /* memberships: a repeat updates role_override (same row), removal deletes */
    ev(f, "group-10", "GroupMemberAdded", "{'group_id':10,'user_id':2,'role_override':'viewer','at':'2025-12-18T08:13:00Z'}");
    ev(f, "group-11", "GroupMemberAdded", "{'group_id':11,'user_id':2,'at':'2025-12-18T08:14:00Z'}");
    ev(f, "group-11", "GroupMemberAdded", "{'group_id':11,'user_id':4,'role_override':'viewer','at':'2025-12-18T08:14:30Z'}");
    ev(f, "group-10", "GroupMemberAdded", "{'group_id':10,'user_id':2,'role_override':'operator','at':'2025-12-18T08:15:00Z'}");
    ev(f, "group-11", "GroupMemberRemoved", "{'group_id':11,'user_id':4,'at':'2025-12-18T08:16:00Z'}");
    ev(f, "group-11", "GroupMemberRemoved", "{'group_id':11,'user_id':3}"); /* not a member: nothing */
    sync_proj(f, "auth");
    expect_table(f, "auth", "SELECT * FROM user_groups ORDER BY id",
                 "[{'id':1,'user_id':3,'group_id':10,'role_override':null,'created_at':'2025-12-18T08:10:00Z'},"
                 "{'id':2,'user_id':2,'group_id':10,'role_override':'operator','created_at':'2025-12-18T08:13:00Z'},"
                 "{'id':3,'user_id':2,'group_id':11,'role_override':null,'created_at':'2025-12-18T08:14:00Z'}]");

    /* profile, password, role, deactivation and back */
    static const step ALICE[] = {
        {"UserProfileUpdated", "'display_name':'Alice Liddell'", "{'display_name':'Alice Liddell'}"},
        {"UserPasswordChanged", "'password_hash':'" BCRYPT_C "'", "{'password_hash':'" BCRYPT_C "'}"},
        {"UserRoleChanged", "'role':'viewer'", "{'role':'viewer'}"},
        {"UserDeactivated", "", "{'is_active':false}"},
        {"UserDeactivated", "", "{}"},
        {"UserReactivated", "", "{'is_active':true}"},
        {"UserRoleChanged", "'role':'operator'", "{'role':'operator'}"},
    };
    json_t *alice = row_new("{'id':2,'username':'alice','display_name':null,'password_hash':'" BCRYPT_B "',"
                            "'is_active':true,'role':'user','created_at':'%s'}", t_alice);
    WALK(f, "auth", "SELECT * FROM users WHERE id = 2", "user-2", "'id':2", alice, ALICE);
    json_decref(alice);
    ev(f, "user-4", "UserDeactivated", "{'id':4,'at':'2025-12-18T08:20:00Z'}");
    ev(f, "user-9", "UserRoleChanged", "{'id':9,'role':'admin'}"); /* unknown user: nothing */
    sync_proj(f, "auth");
    /* UserRole.is_at_least through the view */
    expect_table(f, "auth", "SELECT * FROM user_role_levels ORDER BY id",
                 "[{'id':1,'username':'admin','role':'admin','is_active':true,'role_level':4},"
                 "{'id':2,'username':'alice','role':'operator','is_active':true,'role_level':3},"
                 "{'id':3,'username':'bob','role':'operator','is_active':true,'role_level':3},"
                 "{'id':4,'username':'carol','role':'user','is_active':false,'role_level':2}]");

    /* sessions: login, logout, the expiry sweep (times compared as times) */
    ev(f, "session-100", "SessionStarted", "{'id':100,'session_id':'" SHA256("1") "','user_id':2,"
                                           "'expires_at':'2025-12-19T08:00:00Z','at':'2025-12-18T08:21:00Z'}");
    ev(f, "session-101", "SessionStarted", "{'id':101,'session_id':'" SHA256("2") "','user_id':3,"
                                           "'expires_at':'2025-12-18T12:00:00Z','at':'2025-12-18T08:22:00Z'}");
    ev(f, "session-102", "SessionStarted", "{'id':102,'session_id':'" SHA256("3") "','user_id':2,"
                                           "'expires_at':'2025-12-18T11:00:00.000Z','at':'2025-12-18T08:23:00Z'}");
    ev(f, "session-103", "SessionStarted", "{'id':103,'session_id':'" SHA256("4") "','user_id':2,"
                                           "'expires_at':'2025-12-18T13:00:00Z','at':'2025-12-18T08:24:00Z'}");
    sync_proj(f, "auth");
    expect_table(f, "auth", "SELECT * FROM sessions WHERE id = 100",
                 "[{'id':100,'session_id':'" SHA256("1") "','user_id':2,'expires_at':'2025-12-19T08:00:00Z',"
                 "'created_at':'2025-12-18T08:21:00Z'}]");
    ev(f, "session-103", "SessionEnded", "{'id':103,'at':'2025-12-18T08:30:00Z'}");
    ev(f, "retention-sessions", "SessionsExpired", "{'before':'2025-12-18T11:00:00Z'}"); /* 102 expires at it: stays */
    sync_proj(f, "auth");
    CHECK(q_int(f, "auth", "SELECT count(*) FROM sessions") == 3);
    ev(f, "retention-sessions", "SessionsExpired", "{'before':'2025-12-18T11:00:00.001Z'}");
    sync_proj(f, "auth");
    expect_table(f, "auth", "SELECT * FROM sessions ORDER BY id",
                 "[{'id':100,'session_id':'" SHA256("1") "','user_id':2,'expires_at':'2025-12-19T08:00:00Z',"
                 "'created_at':'2025-12-18T08:21:00Z'},"
                 "{'id':101,'session_id':'" SHA256("2") "','user_id':3,'expires_at':'2025-12-18T12:00:00Z',"
                 "'created_at':'2025-12-18T08:22:00Z'}]");

    /* tokens: created, used (last_used follows), revoked */
    static const step TOKEN[] = {
        {"TokenUsed", "", "{'last_used':'$AT'}"},
        {"TokenUsed", "", "{'last_used':'$AT'}"},
    };
    ev(f, "token-200", "TokenCreated", "{'id':200,'user_id':2,'token_hash':'" SHA3_512("e") "','name':'ci',"
                                       "'at':'2025-12-18T08:31:00Z'}");
    ev(f, "token-201", "TokenCreated", "{'id':201,'user_id':3,'token_hash':'" SHA3_512("f") "','name':'laptop',"
                                       "'at':'2025-12-18T08:32:00Z'}");
    ev(f, "token-202", "TokenCreated", "{'id':202,'user_id':2,'token_hash':'" SHA3_512("9") "','name':'old',"
                                       "'at':'2025-12-18T08:33:00Z'}");
    sync_proj(f, "auth");
    json_t *tok = row_new("{'id':200,'user_id':2,'token_hash':'" SHA3_512("e") "','name':'ci','last_used':null,"
                          "'created_at':'2025-12-18T08:31:00Z'}");
    expect_row(f, "auth", "SELECT * FROM tokens WHERE id = 200", tok);
    WALK(f, "auth", "SELECT * FROM tokens WHERE id = 200", "token-200", "'id':200", tok, TOKEN);
    char used[40];
    snprintf(used, sizeof used, "%s", json_string_value(json_object_get(tok, "last_used")));
    json_decref(tok);
    ev(f, "token-202", "TokenRevoked", "{'id':202,'at':'2025-12-18T08:40:00Z'}");
    ev(f, "token-299", "TokenUsed", "{'id':299}"); /* unknown: nothing */
    sync_proj(f, "auth");
    expect_table(f, "auth", "SELECT id, user_id, name, last_used FROM tokens ORDER BY id",
                 "[{'id':200,'user_id':2,'name':'ci','last_used':'%s'},"
                 "{'id':201,'user_id':3,'name':'laptop','last_used':null}]", used);

    /* VPS grants: a repeat is a no-op, a revocation deletes */
    ev(f, "user-2", "VpsAccessGranted", "{'user_id':2,'vps_task_id':114,'at':'2025-12-18T08:41:00Z'}");
    ev(f, "user-2", "VpsAccessGranted", "{'user_id':2,'vps_task_id':114,'at':'2025-12-18T08:42:00Z'}");
    ev(f, "user-3", "VpsAccessGranted", "{'user_id':3,'vps_task_id':114,'at':'2025-12-18T08:43:00Z'}");
    ev(f, "user-3", "VpsAccessGranted", "{'user_id':3,'vps_task_id':115,'at':'2025-12-18T08:44:00Z'}");
    ev(f, "user-3", "VpsAccessRevoked", "{'user_id':3,'vps_task_id':114,'at':'2025-12-18T08:45:00Z'}");
    sync_proj(f, "auth");
    expect_table(f, "auth", "SELECT * FROM vps_assignments ORDER BY id",
                 "[{'id':1,'vps_task_id':114,'user_id':2,'created_at':'2025-12-18T08:41:00Z'},"
                 "{'id':3,'vps_task_id':115,'user_id':3,'created_at':'2025-12-18T08:44:00Z'}]");

    /* revocation of an invitation; deletion of a group clears invitations.group_id
     * and its memberships */
    ev(f, "invitation-21", "InvitationRevoked", "{'id':21,'at':'2025-12-18T08:50:00Z'}");
    ev(f, "group-10", "GroupDeleted", "{'id':10,'at':'2025-12-18T08:51:00Z'}");
    sync_proj(f, "auth");
    json_array_remove(inv, 1);
    json_object_set_new(json_array_get(inv, 0), "group_id", json_null());
    expect_json(f, "auth", "SELECT * FROM invitations ORDER BY id", inv);
    expect_table(f, "auth", "SELECT * FROM groups ORDER BY id",
                 "[{'id':11,'name':'visitors','tier':1,'limits_json':{'max_tasks':1},'created_at':'2025-12-18T08:02:00Z'}]");
    expect_table(f, "auth", "SELECT * FROM user_groups ORDER BY id",
                 "[{'id':3,'user_id':2,'group_id':11,'role_override':null,'created_at':'2025-12-18T08:14:00Z'}]");

    /* deletion of a user takes its sessions, tokens, memberships and grants,
     * and clears invitations.created_by_id; nothing of the others moves */
    ev(f, "user-2", "UserDeleted", "{'id':2,'at':'2025-12-18T09:00:00Z'}");
    sync_proj(f, "auth");
    expect_table(f, "auth", "SELECT id, username FROM users ORDER BY id",
                 "[{'id':1,'username':'admin'},{'id':3,'username':'bob'},{'id':4,'username':'carol'}]");
    expect_table(f, "auth", "SELECT id, user_id FROM sessions ORDER BY id", "[{'id':101,'user_id':3}]");
    expect_table(f, "auth", "SELECT id, user_id FROM tokens ORDER BY id", "[{'id':201,'user_id':3}]");
    expect_table(f, "auth", "SELECT * FROM user_groups", "[]");
    expect_table(f, "auth", "SELECT * FROM vps_assignments ORDER BY id",
                 "[{'id':3,'vps_task_id':115,'user_id':3,'created_at':'2025-12-18T08:44:00Z'}]");
    json_object_set_new(json_array_get(inv, 1), "created_by_id", json_null());
    expect_json(f, "auth", "SELECT * FROM invitations ORDER BY id", inv);
    json_decref(inv);
    expect_live(f, "auth");
}

/* Handler errors fault one projection at that event (docs: the engine
 * enforces constraints and foreign keys; the others go on). */
static void faults(void) {
    fx f;
    fx_open(&f, "cluster-fault");
    ev(&f, "task-1", "TaskSubmitted", "{'task_id':1,'command':'true','at':'2025-12-18T08:00:00Z'}");
    uint64_t bad = ev(&f, "task-2", "TaskSubmitted", "{'task_id':2,'name':'no command'}");
    expect_fault(&f, "tasks", bad, "TaskSubmitted", "NOT NULL constraint failed: tasks.command");
    bad = ev(&f, "node-x", "NodeRegistered", "{'hostname':'x','total_cores':4}");
    expect_fault(&f, "nodes", bad, "NodeRegistered", "NOT NULL constraint failed: nodes.url");
    /* a session of a user that does not exist */
    bad = ev(&f, "session-1", "SessionStarted", "{'id':1,'session_id':'" SHA256("0") "','user_id':77,"
                                                "'expires_at':'2025-12-19T00:00:00Z'}");
    CHECK_RC(evl_proj_wait(f.e, "auth", bad, LC_WAIT_MS), EVL_EFAULTED);
    expect_fault(&f, "auth", bad, "SessionStarted", "FOREIGN KEY constraint failed");
    expect_table(&f, "tasks", "SELECT task_id, status FROM tasks", "[{'task_id':1,'status':'pending'}]");
    fx_close(&f);
}

int main(void) {
    fx f;
    fx_open(&f, "cluster");
    tasks(&f);
    nodes(&f);
    auth(&f);
    fx_close(&f);
    faults();
    TEST_PASS();
}
