"""Every SQL statement fuwad runs, by name.

Each query is one move or one read.  Parameters are ``$n``; no identifier or
value is ever formatted into the text.  The moves a worker makes are fenced
by its lease (``worker_id`` and ``attempts``), so a worker whose job was taken
from it (rescued, cancelled, deleted) changes nothing.
"""

JOB_COLUMNS = """
    id, job_name, job_class, job_data, queue, priority, status, attempts,
    max_attempts, delay, available_at, created_at, started_at, completed_at,
    failed_at, last_error, worker_id, leased_at
"""

# Producers -----------------------------------------------------------------

# Push one job.  available_at comes from the database clock, never ours.
PUSH_JOB = """
INSERT INTO queue_jobs (job_name, job_class, job_data, queue, priority,
                        max_attempts, delay, available_at)
VALUES ($1, $2, $3::text::jsonb, $4, $5, $6, $7::integer,
        now() + make_interval(secs => $7::integer))
RETURNING id
"""

# Push many jobs in one statement: one round trip and one NOTIFY per queue
# for thousands of rows.  WITH ORDINALITY keeps the ids in input order.
PUSH_JOBS = """
INSERT INTO queue_jobs (job_name, job_class, job_data, queue, priority,
                        max_attempts, delay, available_at)
SELECT n, c, d::jsonb, q, p, m, s, now() + make_interval(secs => s)
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::smallint[],
            $6::integer[], $7::integer[])
     WITH ORDINALITY AS t(n, c, d, q, p, m, s, ord)
ORDER BY ord
RETURNING id
"""

# Workers -------------------------------------------------------------------

# pending -> processing for up to $3 of the best ready jobs.
# SKIP LOCKED lets many workers claim at once without waiting on each other;
# the CTE picks and locks the rows first so that LIMIT applies to ready
# rows only and the UPDATE touches exactly those.
CLAIM_JOBS = f"""
WITH picked AS (
    SELECT id FROM queue_jobs
    WHERE status = 'pending'
      AND available_at <= now()
      AND ($2::text[] IS NULL OR queue = ANY($2::text[]))
    ORDER BY priority DESC, available_at, id
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
UPDATE queue_jobs AS j
SET status = 'processing', attempts = j.attempts + 1, worker_id = $1,
    leased_at = now(), started_at = now()
FROM picked
WHERE j.id = picked.id
RETURNING {", ".join("j." + c.strip() for c in JOB_COLUMNS.split(","))}
"""

# Seconds until the next pending job falls due, or NULL when none waits.
NEXT_DUE = """
SELECT greatest(0, extract(epoch FROM min(available_at) - now()))::float8
FROM queue_jobs
WHERE status = 'pending'
  AND ($1::text[] IS NULL OR queue = ANY($1::text[]))
"""

# Write the handlers' max_attempts onto just-claimed jobs that have none,
# so a rescuer that cannot import the handler still honours it.
PIN_MAX_ATTEMPTS = """
UPDATE queue_jobs AS j
SET max_attempts = d.max_attempts
FROM unnest($2::bigint[], $3::integer[]) AS d(id, max_attempts)
WHERE j.id = d.id AND j.worker_id = $1 AND j.max_attempts IS NULL
  AND j.status = 'processing'
"""

# processing -> completed for a batch of (id, attempt) held by worker $1.
COMPLETE_JOBS = """
UPDATE queue_jobs AS j
SET status = 'completed', completed_at = now(), last_error = NULL,
    worker_id = NULL, leased_at = NULL
FROM unnest($2::bigint[], $3::integer[]) AS d(id, attempt)
WHERE j.id = d.id AND j.attempts = d.attempt
  AND j.worker_id = $1 AND j.status = 'processing'
RETURNING j.id
"""

# processing -> pending (retry_in not NULL: attempts left, due after the
# backoff) or -> failed (retry_in NULL) for a batch held by worker $1.
FAIL_JOBS = """
UPDATE queue_jobs AS j
SET status = CASE WHEN d.retry_in IS NULL THEN 'failed' ELSE 'pending' END,
    available_at = CASE WHEN d.retry_in IS NULL THEN j.available_at
                        ELSE now() + make_interval(secs => d.retry_in) END,
    failed_at = CASE WHEN d.retry_in IS NULL THEN now() ELSE j.failed_at END,
    last_error = d.error, worker_id = NULL, leased_at = NULL
FROM unnest($2::bigint[], $3::integer[], $4::text[], $5::float8[])
     AS d(id, attempt, error, retry_in)
WHERE j.id = d.id AND j.attempts = d.attempt
  AND j.worker_id = $1 AND j.status = 'processing'
RETURNING j.id
"""

# Rescue: processing -> pending (attempts left) or -> failed, for every
# job leased by the workers in $1, with $2 as the reason.  A worker that
# died is not its job's fault, so such jobs are due at once ($3 = 0); a
# job killed for running past its timeout backs off from $3 seconds,
# doubling per attempt up to $5.  Each row moves once: a second rescuer
# finds no row still leased to those workers.
RESCUE_JOBS = """
UPDATE queue_jobs AS j
SET status = CASE WHEN j.attempts >= coalesce(j.max_attempts, $4)
                  THEN 'failed' ELSE 'pending' END,
    available_at = CASE WHEN j.attempts >= coalesce(j.max_attempts, $4)
                        THEN j.available_at
                        ELSE now() + make_interval(secs => least(
                            $5::float8,
                            $3::float8 * power(2, least(j.attempts - 1, 40))))
                   END,
    failed_at = CASE WHEN j.attempts >= coalesce(j.max_attempts, $4)
                     THEN now() ELSE j.failed_at END,
    last_error = $2, worker_id = NULL, leased_at = NULL
WHERE j.worker_id = ANY($1::text[]) AND j.status = 'processing'
  AND ($6::bigint[] IS NULL OR j.id = ANY($6::bigint[]))
RETURNING j.id, j.status
"""

# Hand back a draining worker's unfinished jobs: processing -> pending,
# due at once, and the interrupted attempt is not counted.
HAND_BACK_JOBS = """
UPDATE queue_jobs
SET status = 'pending', attempts = greatest(attempts - 1, 0),
    available_at = now(), worker_id = NULL, leased_at = NULL,
    last_error = $3
WHERE worker_id = $1 AND id = ANY($2::bigint[]) AND status = 'processing'
RETURNING id
"""

# Which of the jobs in $2 worker $1 still holds.
HELD_JOBS = """
SELECT id FROM queue_jobs
WHERE id = ANY($2::bigint[]) AND worker_id = $1 AND status = 'processing'
"""

# Workers whose heartbeat stopped more than $1 seconds ago, by the database
# clock, and workers on host $2 whose process is gone (the caller checks
# pids).  Locked so that two rescuers never work on the same row.
RESCUE_CANDIDATES = """
SELECT id, host, pid, supervisor_pid,
       heartbeat_at < now() - make_interval(secs => $1) AS stale
FROM queue_workers
WHERE id <> $3
  AND (heartbeat_at < now() - make_interval(secs => $1) OR host = $2)
FOR UPDATE SKIP LOCKED
"""

# Worker rows ---------------------------------------------------------------

REGISTER_WORKER = """
INSERT INTO queue_workers (id, host, pid, role, state, queues, supervisor_pid)
VALUES ($1, $2, $3, $4, 'starting', $5, $6)
ON CONFLICT (id) DO UPDATE
SET host = EXCLUDED.host, pid = EXCLUDED.pid, role = EXCLUDED.role,
    state = 'starting', heartbeat_at = now()
"""

# The heartbeat: the one write of heartbeat_at.
HEARTBEAT = """
UPDATE queue_workers
SET heartbeat_at = now(), state = $2, current_job = $3,
    jobs_done = $4, jobs_failed = $5
WHERE id = $1
RETURNING id
"""

REMOVE_WORKER = "DELETE FROM queue_workers WHERE id = $1"

# Remove the rows of workers that are gone, once their jobs were rescued.
REMOVE_WORKERS = "DELETE FROM queue_workers WHERE id = ANY($1::text[])"

LIST_WORKERS = """
SELECT id, host, pid, role, state, queues, current_job, jobs_done,
       jobs_failed, supervisor_pid, started_at, heartbeat_at,
       extract(epoch FROM now() - heartbeat_at)::float8 AS heartbeat_age
FROM queue_workers
ORDER BY host, pid
"""

# Operators -----------------------------------------------------------------

GET_JOB = f"SELECT {JOB_COLUMNS} FROM queue_jobs WHERE id = $1"

GET_PENDING_JOBS = f"""
SELECT {JOB_COLUMNS} FROM queue_jobs
WHERE status = 'pending'
  AND ($2::text IS NULL OR queue = $2)
ORDER BY priority DESC, available_at, id
LIMIT $1
"""

# A page of jobs, newest first, with optional filters; only up to id $6
# when it is given, so that a reader's later pages hold still while new
# jobs arrive.
LIST_JOBS = f"""
SELECT {JOB_COLUMNS} FROM queue_jobs
WHERE ($1::text IS NULL OR status = $1)
  AND ($2::text IS NULL OR queue = $2)
  AND ($3::text IS NULL OR job_class = $3)
  AND ($6::bigint IS NULL OR id <= $6)
ORDER BY id DESC
LIMIT $4 OFFSET $5
"""

COUNT_JOBS = """
SELECT count(*) FROM queue_jobs
WHERE ($1::text IS NULL OR status = $1)
  AND ($2::text IS NULL OR queue = $2)
  AND ($3::text IS NULL OR job_class = $3)
  AND ($4::bigint IS NULL OR id <= $4)
"""

# failed | completed -> pending, due after $2 seconds, with attempts reset.
RETRY_JOB = """
UPDATE queue_jobs
SET status = 'pending', attempts = 0, available_at = now()
        + make_interval(secs => $2),
    completed_at = NULL, failed_at = NULL, worker_id = NULL, leased_at = NULL
WHERE id = $1 AND status IN ('failed', 'completed')
RETURNING id
"""

# pending | processing -> cancelled.  A worker still running the job loses
# its lease here, so its late outcome changes nothing.
CANCEL_JOB = """
UPDATE queue_jobs
SET status = 'cancelled', worker_id = NULL, leased_at = NULL,
    failed_at = now()
WHERE id = $1 AND status IN ('pending', 'processing')
RETURNING id
"""

# An operator's manual moves, outside any lease.
MARK_COMPLETED = """
UPDATE queue_jobs
SET status = 'completed', completed_at = now(), worker_id = NULL,
    leased_at = NULL
WHERE id = $1 AND status IN ('pending', 'processing')
RETURNING id
"""

MARK_FAILED = """
UPDATE queue_jobs
SET status = 'failed', failed_at = now(), last_error = $2, worker_id = NULL,
    leased_at = NULL
WHERE id = $1 AND status IN ('pending', 'processing')
RETURNING id
"""

DELETE_JOB = "DELETE FROM queue_jobs WHERE id = $1 RETURNING id, status"

JOB_STATUS = "SELECT status FROM queue_jobs WHERE id = $1"

STATS = "SELECT status, count(*) FROM queue_jobs GROUP BY status"

# Ready jobs: how many, and how long the oldest has waited.
READY = """
SELECT count(*),
       coalesce(extract(epoch FROM now() - min(available_at)), 0)::float8
FROM queue_jobs
WHERE status = 'pending' AND available_at <= now()
"""

# Ready jobs, counted up to 10000: enough to decide on scaling, and cheap
# on the partial index however long the queue.
READY_COUNT = """
SELECT count(*) FROM (
    SELECT 1 FROM queue_jobs
    WHERE status = 'pending' AND available_at <= now()
    LIMIT 10000
) AS ready
"""

# Delete finished jobs older than their time to live.
CLEANUP = """
WITH gone AS (
    DELETE FROM queue_jobs
    WHERE (status = 'completed'
           AND completed_at < now() - make_interval(secs => $1))
       OR (status IN ('failed', 'cancelled')
           AND failed_at < now() - make_interval(secs => $2))
    RETURNING 1
)
SELECT count(*) FROM gone
"""

# HTTP API ------------------------------------------------------------------

# Jobs per status and queue, for /metrics.
JOBS_BY_STATUS_QUEUE = """
SELECT status, queue, count(*) AS count FROM queue_jobs
GROUP BY status, queue
ORDER BY status, queue
"""

# Workers per state, and the jobs the live ones finished, for /metrics.
WORKERS_BY_STATE = """
SELECT state, count(*) AS count, sum(jobs_done)::bigint AS jobs_done,
       sum(jobs_failed)::bigint AS jobs_failed
FROM queue_workers
GROUP BY state
ORDER BY state
"""

# Jobs completed and failed in each of the last 60 minutes, oldest first,
# every minute present even when nothing happened in it.
PER_MINUTE = """
WITH minutes AS (
    SELECT generate_series(date_trunc('minute', now()) - interval '59 min',
                           date_trunc('minute', now()),
                           interval '1 min') AS minute
), done AS (
    SELECT date_trunc('minute', completed_at) AS minute, count(*) AS n
    FROM queue_jobs
    WHERE status = 'completed'
      AND completed_at >= date_trunc('minute', now()) - interval '59 min'
    GROUP BY 1
), failed AS (
    SELECT date_trunc('minute', failed_at) AS minute, count(*) AS n
    FROM queue_jobs
    WHERE status = 'failed'
      AND failed_at >= date_trunc('minute', now()) - interval '59 min'
    GROUP BY 1
)
SELECT m.minute, coalesce(d.n, 0) AS completed, coalesce(f.n, 0) AS failed
FROM minutes AS m
LEFT JOIN done AS d USING (minute)
LEFT JOIN failed AS f USING (minute)
ORDER BY m.minute
"""

# Make a token.  A revoked or expired token's name is taken over; an active
# one's is not (the WHERE leaves the row alone and nothing is returned).
CREATE_TOKEN = """
INSERT INTO queue_api_tokens (name, token_hash, role, expires_at)
VALUES ($1, $2, $3, now() + make_interval(secs => $4::integer))
ON CONFLICT (name) DO UPDATE
SET token_hash = EXCLUDED.token_hash, role = EXCLUDED.role,
    expires_at = EXCLUDED.expires_at, created_at = now(), revoked_at = NULL,
    last_used_at = NULL
WHERE queue_api_tokens.revoked_at IS NOT NULL
   OR queue_api_tokens.expires_at <= now()
RETURNING name, role, created_at, expires_at, revoked_at, last_used_at,
          'active' AS state
"""

TOKEN_STATE = """
CASE WHEN revoked_at IS NOT NULL THEN 'revoked'
     WHEN expires_at <= now() THEN 'expired'
     ELSE 'active' END
"""

LIST_TOKENS = f"""
SELECT name, role, created_at, expires_at, revoked_at, last_used_at,
       {TOKEN_STATE} AS state
FROM queue_api_tokens
ORDER BY name
"""

REVOKE_TOKEN = f"""
UPDATE queue_api_tokens SET revoked_at = coalesce(revoked_at, now())
WHERE name = $1
RETURNING name, role, created_at, expires_at, revoked_at, last_used_at,
          {TOKEN_STATE} AS state
"""

COUNT_ACTIVE_TOKENS = """
SELECT count(*) FROM queue_api_tokens
WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
"""

# Find a token by its hash; expiry by the database clock.
FIND_TOKEN = """
SELECT id, name, role, token_hash, revoked_at IS NOT NULL AS revoked,
       coalesce(expires_at <= now(), false) AS expired
FROM queue_api_tokens
WHERE token_hash = $1
"""

# Note a token's use at most once a minute, so that reads stay reads.
TOUCH_TOKEN = """
UPDATE queue_api_tokens SET last_used_at = now()
WHERE id = $1
  AND (last_used_at IS NULL OR last_used_at < now() - interval '1 min')
"""

