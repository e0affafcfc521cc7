-- The STK pushes wait in payment_attempts itself (status requesting), not in
-- a job queued by the trigger that opens the attempt: queueing a
-- graphile-worker job there cost each initiated payment more than the rest
-- of its status change (bench/status-changes.ts). A dispatcher in the
-- server, woken by the flow's notification, queues the jobs
-- (app_private.queue_stk_pushes).
alter table app_public.payment_attempts add column push_queued_at timestamptz;
comment on column app_public.payment_attempts.push_queued_at is 'When the STK push job was queued (graphile-worker).';
create index payment_attempts_to_push_idx on app_public.payment_attempts (created_at) where status = 'requesting' and push_queued_at is null;
