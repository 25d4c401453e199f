"""Generate a PostgreSQL schema for panda-server from its own record classes.

Run with the PanDA venv's Python (it imports ``pandaserver``): prints SQL on stdout.

Why: PanDA's reference schema lives in a repository that is not on any package registry, so a
clean CI machine cannot fetch it. The tables the server's API uses for tasks, jobs and files
are the persistent forms of its Spec classes (``JobSpec._attributes`` are the columns of
``jobsDefined4``/``jobsActive4``/``jobsArchived4``...), so their columns come from the
installed package itself; the few bookkeeping tables the API reads besides are declared
below. Column types follow PanDA's naming (``...Time`` timestamps, ids/counts numeric).
When the reference schema is available (``EPIC_PANDA_SCHEMA_DIR``) it is used instead.
"""

from __future__ import annotations

import importlib
import re
import sys

SPEC_TABLES = {  # table: (module, class)
    "DOMA_PANDA.jobsDefined4": ("pandaserver.taskbuffer.JobSpec", "JobSpec"),
    "DOMA_PANDA.jobsActive4": ("pandaserver.taskbuffer.JobSpec", "JobSpec"),
    "DOMA_PANDA.jobsWaiting4": ("pandaserver.taskbuffer.JobSpec", "JobSpec"),
    "DOMA_PANDA.jobsArchived4": ("pandaserver.taskbuffer.JobSpec", "JobSpec"),
    "DOMA_PANDAARCH.jobsArchived": ("pandaserver.taskbuffer.JobSpec", "JobSpec"),
    "DOMA_PANDA.filesTable4": ("pandaserver.taskbuffer.FileSpec", "FileSpec"),
    "DOMA_PANDA.Datasets": ("pandaserver.taskbuffer.DatasetSpec", "DatasetSpec"),
    "DOMA_PANDA.JEDI_Tasks": ("pandaserver.taskbuffer.JediTaskSpec", "JediTaskSpec"),
    "DOMA_PANDA.JEDI_Datasets": ("pandaserver.taskbuffer.JediDatasetSpec", "JediDatasetSpec"),
    "DOMA_PANDA.JEDI_Dataset_Contents": ("pandaserver.taskbuffer.JediFileSpec", "JediFileSpec"),
    # the workers Harvester reports (harvester/update_workers); the pilot's worker status
    "DOMA_PANDA.Harvester_Workers": ("pandaserver.taskbuffer.WorkerSpec", "WorkerSpec"),
}
PRIMARY_KEYS = {
    "DOMA_PANDA.jobsDefined4": "PandaID", "DOMA_PANDA.jobsActive4": "PandaID",
    "DOMA_PANDA.jobsWaiting4": "PandaID", "DOMA_PANDA.jobsArchived4": "PandaID",
    "DOMA_PANDA.filesTable4": "row_ID", "DOMA_PANDA.JEDI_Tasks": "jediTaskID",
    "DOMA_PANDA.JEDI_Datasets": "jediTaskID, datasetID",
    "DOMA_PANDA.JEDI_Dataset_Contents": "jediTaskID, datasetID, fileID",
    "DOMA_PANDA.Harvester_Workers": "harvesterID, workerID",
}
EXTRA_COLUMNS = {"DOMA_PANDA.filesTable4": ["modificationTime"],  # not Spec attributes
                 "DOMA_PANDA.JEDI_Dataset_Contents": ["jobsetID"],
                 # what the pilot of a Harvester worker reports (updateWorkerPilotStatus)
                 "DOMA_PANDA.Harvester_Workers": ["pilotStatus", "pilotStartTime",
                                                  "pilotEndTime", "pilotStatusSyncTime"]}
NUMERIC_TIMES = {"cputime", "walltime", "basewalltime", "maxwalltime", "mergewalltime",
                 "cpuconsumptiontime"}
TIMESTAMP = re.compile(r"(time|date|expiration|ttcrequested|ttcpredicted)$")
NUMERIC = re.compile(
    r"(^|_)(id|nr|n)$|id$|^n[a-z]*files|^n(events|input|output|files)|count$|priority$|"
    r"errorcode$|^(fsize|nevents|attemptnr|maxattempt|maxfailure|failedattempt|pandaid|"
    r"progress|failurerate|hs06|hs06sec|memory_leak.*|.*rss|.*pss|.*vmem|.*swap|tot[rw].*|"
    r"rate[rw].*|cpuconversion|cpuefficiency|diskio|iointensity|gco2_.*|keeptrack|goal|"
    r"amiflag|relocationflag|transferstatus|eventservice|lumiblocknr|firstevent|startevent|"
    r"endevent|numthrottled|currentfiles|jobsetid|jobexecutionid|.*bytes|.*walltime|"
    r"cputime|cpuconsumptiontime|ramcount|workdiskcount|outdiskcount|maxcpucount|"
    r"maxdiskcount|constituent_id|outpandaid|masterid|moverid|parentid|provenanceid|"
    r"boundaryid|reqid|templateid|meancorecount|actualcorecount|corecount|"
    r"neventstobeused|neventsused|nfiles.*|numberfiles|parent_tid|workqueue_id|"
    r"superrorcode|taskbuffererrorcode|piloterrorcode|exeerrorcode|ddmerrorcode|"
    r"brokerageerrorcode|jobdispatchererrorcode|taskpriority|minramcount|baseramcount|"
    r"mergeramcount|mergecorecount|ninputdatafiles|noutputdatafiles|inputfilebytes|"
    r"outputfilebytes|jobdefinitionid|jeditaskid|datasetid|fileid|row_id|taskid|"
    r"attemptnr|maxattempt|ramcount|ncore|nativeexitcode|njobs)$")
STRING_IDS = {"guid", "batchid", "grid", "pilotid", "produserid", "schedulerid", "ticketid",
              "vuid", "harvesterid", "nodeid"}
TEXT = {"jobparameters", "metadata", "taskparams", "jedi_task_parameters", "splitrule",
        "errordialog", "diagnostics", "data", "json_data", "jobmetrics"}


def column_type(name: str) -> str:
    low = name.lower()
    if low in TEXT:
        return "TEXT"
    if TIMESTAMP.search(low) and low not in NUMERIC_TIMES:
        return "TIMESTAMP"
    if NUMERIC.search(low) and low not in STRING_IDS:
        return "BIGINT"
    return "VARCHAR(4000)"


def spec_table(table: str, module: str, cls: str) -> str:
    spec = getattr(importlib.import_module(module), cls)
    attrs = getattr(spec, "_attributes", None) or spec.attributes
    cols = [f"  {a} {column_type(a)}" for a in (*attrs, *EXTRA_COLUMNS.get(table, []))]
    if table in PRIMARY_KEYS:
        cols.append(f"  PRIMARY KEY ({PRIMARY_KEYS[table]})")
    return f"CREATE TABLE {table} (\n" + ",\n".join(cols) + "\n);"


# Bookkeeping tables the task/job API reads or writes besides the Spec tables, with the
# columns the server's queries name (db_proxy_mods). ``col:k`` forces a kind: n numeric,
# s string, t timestamp, j JSON, x long text; otherwise the name rules above apply.
BOOKKEEPING = {
    "DOMA_DEFT.T_TASK": "taskid:n parent_tid status total_done_jobs:n submit_time start_time "
    "timestamp:t vo prodsourcelabel taskname username priority current_priority total_req_jobs:n "
    "chain_tid:n total_events:n jedi_task_parameters:x total_input_events:n",
    "DOMA_DEFT.PRODSYS_COMM": "comm_task:n comm_meta_id:n comm_owner comm_cmd comm_ts "
    "comm_comment:x comm_parameters:x",
    "DOMA_PANDA.JEDI_TaskParams": "jeditaskid taskparams:x",
    "DOMA_PANDA.jobParamsTable": "pandaid modificationtime jobparameters:x",
    "DOMA_PANDA.metaTable": "pandaid modificationtime metadata:x",
    "DOMA_PANDAARCH.jobParamsTable_ARCH": "pandaid modificationtime jobparameters:x",
    "DOMA_PANDAARCH.metaTable_ARCH": "pandaid modificationtime metadata:x",
    "DOMA_PANDA.JEDI_Job_Retry_History": "jeditaskid oldpandaid:n newpandaid:n ins_utc_tstamp "
    "relationtype originpandaid:n",
    "DOMA_PANDA.JEDI_AUX_Status_MinTaskID": "status min_jeditaskid:n",
    "DOMA_PANDA.tasks_statuslog": "jeditaskid modificationtime status modificationhost "
    "attemptnr reason",
    "DOMA_PANDA.task_attempts": "jeditaskid attemptnr starttime endtime startstatus endstatus",
    "DOMA_PANDA.JEDI_Output_Template": "jeditaskid datasetid outtempid filenametemplate "
    "maxserialnr:n serialnr:n sourcename streamname outtype",
    "DOMA_PANDA.JEDI_JobParams_Template": "jeditaskid jobparamstemplate:x",
    "DOMA_PANDA.config": "app component key value:s type vo descr value_json:j",
    # the retrial module's rules (failed job -> retry action); empty: JEDI's default retries
    "DOMA_PANDA.retryerrors": "retryerror_id:n errorsource errorcode:n errordiag parameters "
    "architecture release workqueue_id:n retryaction:n active expiration_date:t "
    "description",
    "DOMA_PANDA.retryactions": "retryaction_id:n retry_action active retry_description",
    "DOMA_PANDA.resource_types": "resource_name mincore:n maxcore:n minrampercore:n "
    "maxrampercore:n",
    "DOMA_PANDA.site": "site_name role tier_level:n state",
    "DOMA_PANDA.panda_site": "panda_site_name site_name storage_site_name default_ddm_endpoint "
    "is_local",
    "DOMA_PANDA.ddm_endpoint": "ddm_endpoint_name site_name ddm_spacetoken_name space_total:n "
    "space_free:n space_used:n is_tape type blacklisted space_expired:n space_timestamp "
    "blacklisted_read blacklisted_write detailed_status:j space_min_free:n space_unavailable:n",
    "DOMA_PANDA.panda_ddm_relation": "panda_site_name ddm_endpoint_name is_local roles "
    "order_read:n order_write:n default_read default_write scope",
    "DOMA_PANDA.schedconfig_json": "panda_queue data:j last_update",
    "DOMA_PANDA.harvester_slots": "pandaqueuename gshare resourcetype numslots:n "
    "modificationtime expirationtime",
    "DOMA_PANDA.jobs_share_stats": "ts gshare computingsite jobstatus maxpriority:n "
    "prorated_diskio_avg:n prorated_mem_avg:n njobs:n hs:n vo workqueue_id resource_type "
    "nucleus",
    "DOMA_PANDA.jobsdefined_share_stats": "ts gshare computingsite jobstatus maxpriority:n "
    "prorated_diskio_avg:n prorated_mem_avg:n njobs:n hs:n vo workqueue_id resource_type "
    "nucleus",
    "DOMA_PANDA.global_shares": "name value:n parent prodsourcelabel workinggroup campaign "
    "processingtype vo queue_id:n throttled transpath rtype",
    "DOMA_PANDA.carbon_region_emissions": "region timestamp:t value:n",
    "DOMA_PANDA.JEDI_Work_Queue": "queue_id:n queue_name queue_type vo status partitionid:n "
    "stretchable:n queue_share:n queue_order:n criteria variables queue_function",
    # read/written by JEDI's agents (ContentsFeeder, JobGenerator, TaskCommando)
    "DOMA_PANDA.JEDI_Dataset_Locality": "jeditaskid datasetid rse timestamp:t",
    "DOMA_PANDA.JEDI_Process_Lock": "vo prodsourcelabel cloud workqueue_id:n resource_type "
    "component lockedby lockedtime",
    "DOMA_PANDA.typical_num_input": "vo agg_type agg_key prodsourcelabel processingtype "
    "ninputdatafiles:n",
    "DOMA_PANDA.Task_Metrics": "jeditaskid creationtime modificationtime data:x",
    "DOMA_PANDA.Job_Metrics": "jeditaskid pandaid creationtime modificationtime data:x",
    # Harvester's instances, its workers' jobs, worker statistics, commands, dialogs and
    # metrics (the harvester/* API); columns and kinds as PanDA's reference schema has them
    "DOMA_PANDA.Harvester_Rel_Jobs_Workers": "harvesterid:s workerid:n pandaid:n lastupdate:t",
    "DOMA_PANDA.Harvester_Instances": "harvester_id:s description:s starttime:t owner:s "
    "hostname:s lastupdate:t sw_version:s commit_stamp:s",
    "DOMA_PANDA.Harvester_Worker_Stats": "harvester_id:s computingsite:s resourcetype:s "
    "status:s jobtype:s n_workers:n lastupdate:t",
    "DOMA_PANDA.Harvester_Commands": "command_id:n command:s harvester_id:s ack_requested:n "
    "creation_date:t status:s status_date:t params:x",
    "DOMA_PANDA.Harvester_Command_Lock": "harvester_id:s computingsite:s resourcetype:s "
    "command:s lockedtime:t lockedby:s",
    "DOMA_PANDA.Harvester_Dialogs": "harvester_id:s diagid:n modulename:s identifier:s "
    "creationtime:t messagelevel:s diagmessage:s",
    "DOMA_PANDA.Harvester_Metrics": "harvester_id:s creation_time:t harvester_host:s metrics:s",
    # the pilot's final report of a job, consumed by the server's Adder
    "DOMA_PANDA.Job_Output_Report": "pandaid:n prodsourcelabel jobstatus attemptnr:n data:x "
    "timestamp:t lockedby lockedtime:t",
    "DOMA_PANDA.SQL_QUEUE": "topic pandaid:n jeditaskid:n creationtime data:x "
    "execution_order:n",
    # CPU benchmarks per worker node, looked up when a job's CPU time is accounted
    "DOMA_PANDA.worker_node": "site host_name cpu_model_normalized threads_per_core:n "
    "n_logical_cpus:n",
    "DOMA_PANDA.cpu_benchmarks": "site cpu_type_normalized smt_enabled:n ncores:n "
    "score_per_core:n",
    "DOMA_PANDAMETA.SiteData": "site flag hours:n getjob:n updatejob:n nojob:n getjobabs:n "
    "updatejobabs:n nojobabs:n lastmod:t laststart:t",
    "DOMA_PANDAMETA.users": "id:n name dn email url location classa classp classxp sitepref "
    "gridpref queuepref scriptcache types sites njobsa:n njobsp:n njobs1:n njobs7:n njobs30:n "
    "cpua1:n cpua7:n cpua30:n cpup1:n cpup7:n cpup30:n cpuxp1:n cpuxp7:n cpuxp30:n quotaa1:n "
    "quotaa7:n quotaa30:n quotap1:n quotap7:n quotap30:n quotaxp1:n quotaxp7:n quotaxp30:n "
    "space1:n space7:n space30:n lastmod:t firstjob:t latestjob:t pagecache:x cachetime "
    "ncurrent:n jobid:n status vo",
}
KINDS = {"n": "BIGINT", "s": "VARCHAR(4000)", "t": "TIMESTAMP", "j": "JSONB", "x": "TEXT"}
# Active-job counts per queue and state, read by the statistics API Harvester's worker
# adjuster uses (pull mode: pilots for activated jobs). Production fills this table from
# jobsActive4 every 2 minutes with a scheduled procedure; here a view gives the same rows live.
JOBS_ACTIVE_STATS = """
CREATE VIEW DOMA_PANDA.mv_jobsactive4_stats AS
SELECT localtimestamp AS cur_date, cloud, computingsite, countrygroup, workinggroup,
       relocationflag, jobstatus, processingtype, prodsourcelabel,
       (currentpriority / 10) * 10 AS currentpriority, vo, workqueue_id,
       COUNT(*) AS num_of_jobs, SUM(COALESCE(actualcorecount, corecount)) AS num_of_cores,
       resource_type
FROM DOMA_PANDA.jobsactive4
GROUP BY cloud, computingsite, countrygroup, workinggroup, relocationflag, jobstatus,
         processingtype, prodsourcelabel, (currentpriority / 10) * 10, vo, workqueue_id,
         resource_type;
"""
SEQUENCES = ["DOMA_DEFT.PRODSYS2_TASK_ID_SEQ", "DOMA_PANDA.JOBSDEFINED4_PANDAID_SEQ",
             "DOMA_PANDA.FILESTABLE4_ROW_ID_SEQ", "DOMA_PANDA.JEDI_DATASETS_ID_SEQ",
             "DOMA_PANDA.JEDI_DATASET_CONT_FILEID_SEQ", "DOMA_PANDAMETA.USERS_ID_SEQ",
             "DOMA_PANDA.JEDI_OUTPUT_TEMPLATE_ID_SEQ", "DOMA_PANDA.SUBCOUNTER_SUBID_SEQ",
             "DOMA_PANDA.HARVESTER_COMMAND_ID_SEQ"]


def bookkeeping_table(table: str, spec: str) -> str:
    cols = []
    for token in spec.split():
        name, _, kind = token.partition(":")
        cols.append(f"  {name} {KINDS[kind] if kind else column_type(name)}")
    return f"CREATE TABLE {table} (\n" + ",\n".join(cols) + "\n);"


# JEDI scans tasks per status from a lower task id kept by a cron job in production.
TASK_STATUSES = ("registered defined assigning ready pending scouting scouted running prepared "
                 "done finished failed broken aborted tobroken toabort aborting paused throttled "
                 "exhausted passed rerefine staging topreprocess preprocessing submitting "
                 "toretry toincexec finishing")


# panda-server 1.0.4's getSerialNumber binds the dataset name as bytes (a Python 2 leftover):
# on PostgreSQL that is ``varchar = bytea``, which has no operator, and every job without a
# JEDI-made destination dataset fails in the setupper. This operator compares them as text.
BYTEA_COMPAT = """
CREATE FUNCTION public.epic_varchar_eq_bytea(a VARCHAR, b BYTEA) RETURNS BOOLEAN
  LANGUAGE sql IMMUTABLE AS $$ SELECT a = convert_from(b, 'UTF8') $$;
CREATE OPERATOR public.= (LEFTARG = VARCHAR, RIGHTARG = BYTEA,
  FUNCTION = public.epic_varchar_eq_bytea);
"""


def main() -> None:
    out = ["CREATE SCHEMA IF NOT EXISTS DOMA_PANDA;", "CREATE SCHEMA IF NOT EXISTS DOMA_PANDAMETA;",
           "CREATE SCHEMA IF NOT EXISTS DOMA_PANDAARCH;", "CREATE SCHEMA IF NOT EXISTS DOMA_DEFT;"]
    out += [spec_table(t, m, c) for t, (m, c) in SPEC_TABLES.items()]
    out += [bookkeeping_table(t, cols) for t, cols in BOOKKEEPING.items()]
    out += [f"CREATE SEQUENCE {seq};" for seq in SEQUENCES]
    out += [BYTEA_COMPAT, JOBS_ACTIVE_STATS]
    out += [f"INSERT INTO DOMA_PANDA.JEDI_AUX_Status_MinTaskID VALUES ('{s}', 0);"
            for s in TASK_STATUSES.split()]
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
