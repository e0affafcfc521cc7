--! Previous: sha1:a1df83d9e0a6eae0f14c48e4a70a602364dbbd79
--! Hash: sha1:dae62544868036c74dafa4bc93bb0f2b5c6953da
--! Message: Review: one place for each job key, refused callbacks and ended claims

--! Included 43_payment_attempts.sql
-- M-Pesa payment attempts and their callbacks (tables: 19_payment_attempts.sql).
--
-- Every path that moves a payment keeps its attempts true, by trigger:
-- entering `initiated` opens an attempt (status requesting: its STK push is
-- to be made once the step commits; app_private.queue_stk_pushes queues the
-- job); leaving `initiated` settles the open attempt. The provider's
-- answers (push response, callback, STK push query) settle attempts through
-- app_private.settle_attempt, which moves the payment and the session.

-- Opens the attempt of a payment that enters `initiated`; settles the open
-- attempt of a payment that leaves it. Planned for each call: a connection
-- that started when payment_attempts was empty kept a plan that scanned the
-- whole table, slower with every attempt, until autovacuum's next ANALYZE
-- (bench/status-changes.ts fell from 0.55 to 0.46 within a run; 0.54 steady
-- this way).
create or replace function app_private.tg_payments__attempts() returns trigger
language plpgsql
set plan_cache_mode = force_custom_plan
as $$
declare
  v_attempt_id uuid;
begin
  if old.status = 'initiated' and new.status <> 'initiated' then
    update app_public.payment_attempts a
    set status = case new.status when 'confirmed' then 'confirmed' when 'failed' then 'failed' else 'abandoned' end,
        settled_by = 'payment_status',
        settled_at = now()
    where a.payment_id = new.id and a.settled_at is null;
  end if;
  if new.status = 'initiated' and old.status <> 'initiated' then
    insert into app_public.payment_attempts (payment_id, session_id, attempt_no, phone, amount_kes)
    select new.id, new.session_id, coalesce(max(a.attempt_no), 0) + 1, new.payer_phone, new.amount_kes
    from app_public.payment_attempts a where a.payment_id = new.id
    returning id into v_attempt_id;
  end if;
  return null;
end;
$$;
comment on function app_private.tg_payments__attempts() is
  'Opens a payment attempt when a payment is initiated; settles it when the payment moves on.';
create or replace trigger _500_payment_attempts
  after update of status on app_public.payments
  for each row when (old.status is distinct from new.status and 'initiated' in (old.status, new.status))
  execute function app_private.tg_payments__attempts();

-- An attempt, locked, with its session locked first (as every flow step):
-- NOT_FOUND when there is none.
create or replace function app_private.lock_attempt(attempt_id uuid, step text)
returns app_public.payment_attempts
language plpgsql
as $$
declare
  v_session_id uuid;
  v_attempt app_public.payment_attempts;
begin
  select a.session_id into v_session_id from app_public.payment_attempts a where a.id = lock_attempt.attempt_id;
  if v_session_id is null then
    perform app_private.raise_error('NOT_FOUND', format('Payment attempt not found: %s', lock_attempt.attempt_id),
                                    jsonb_build_object('entity', 'payment_attempt', 'id', lock_attempt.attempt_id));
  end if;
  perform app_private.lock_session(v_session_id, lock_attempt.step);
  select * into v_attempt from app_public.payment_attempts a where a.id = lock_attempt.attempt_id for update;
  return v_attempt;
end;
$$;

-- Settles an attempt with what the provider says of it (the caller holds the
-- session and the attempt locked), and returns the outcome
-- (app_hidden.payment_callback_outcomes). Only the open attempt of an
-- initiated payment moves the flow; money taken for any other is raised for
-- a refund or reconciliation, never applied.
create or replace function app_private.settle_attempt(
  attempt app_public.payment_attempts,
  result_code integer,
  result_desc text,
  amount numeric,
  mpesa_receipt text,
  source text
)
returns text
language plpgsql
as $$
declare
  v_paid boolean := coalesce(settle_attempt.result_code = 0, false);
begin
  if attempt.settled_at is not null then
    if v_paid and attempt.status = 'confirmed' or not v_paid and attempt.status = 'failed' then
      update app_public.payment_attempts a
      set mpesa_receipt = coalesce(a.mpesa_receipt, settle_attempt.mpesa_receipt),
          result_code = coalesce(a.result_code, settle_attempt.result_code),
          result_desc = coalesce(a.result_desc, settle_attempt.result_desc)
      where a.id = attempt.id;
      return 'already_settled';
    elsif v_paid then
      insert into app_public.required_actions (session_id, action, entity_type, entity_id, detail)
      values (attempt.session_id, 'REFUND_OR_RECONCILE_PAYMENT', 'payment_attempt', attempt.id,
              jsonb_build_object('attemptStatus', attempt.status, 'amount', settle_attempt.amount,
                                 'mpesaReceipt', settle_attempt.mpesa_receipt, 'source', settle_attempt.source));
      return 'late_success';
    end if;
    return 'late_failure';
  end if;

  if v_paid and settle_attempt.amount is distinct from attempt.amount_kes::numeric then
    update app_public.payment_attempts a
    set status = 'amount_mismatch', result_code = settle_attempt.result_code, result_desc = settle_attempt.result_desc,
        mpesa_receipt = settle_attempt.mpesa_receipt, settled_by = settle_attempt.source, settled_at = now()
    where a.id = attempt.id;
    insert into app_public.required_actions (session_id, action, entity_type, entity_id, detail)
    values (attempt.session_id, 'RECONCILE_PAYMENT_AMOUNT', 'payment_attempt', attempt.id,
            jsonb_build_object('expectedAmount', attempt.amount_kes, 'amount', settle_attempt.amount,
                               'mpesaReceipt', settle_attempt.mpesa_receipt));
    return 'amount_mismatch';
  end if;

  update app_public.payment_attempts a
  set status = case when v_paid then 'confirmed' else 'failed' end,
      result_code = settle_attempt.result_code, result_desc = settle_attempt.result_desc,
      mpesa_receipt = settle_attempt.mpesa_receipt, settled_by = settle_attempt.source, settled_at = now()
  where a.id = attempt.id;
  perform app_private.apply_payment_outcome(attempt.session_id, case when v_paid then 'confirmed' else 'failed' end);
  return case when v_paid then 'confirmed' else 'failed' end;
end;
$$;

-- The result of a callback, as stored in the ledger and returned.
create or replace function app_private.payment_callback_result(outcome text, attempt_id uuid, session_id uuid)
returns jsonb
language sql
stable
as $$
  select jsonb_build_object(
    'outcome', payment_callback_result.outcome,
    'acknowledged', o.acknowledged,
    'sessionId', payment_callback_result.session_id,
    'attemptId', payment_callback_result.attempt_id,
    'paymentStatus', (select p.status from app_public.payments p where p.session_id = payment_callback_result.session_id),
    'sessionStatus', (select s.status from app_public.sessions s where s.id = payment_callback_result.session_id),
    'message', o.meaning)
  from app_hidden.payment_callback_outcomes o where o.outcome = payment_callback_result.outcome;
$$;

create or replace function app_private.to_callback_result(result jsonb, duplicate boolean)
returns app_public.payment_callback_result
language sql
immutable
as $$
  select (result ->> 'outcome', (result ->> 'acknowledged')::boolean, to_callback_result.duplicate,
          (result ->> 'sessionId')::uuid, (result ->> 'attemptId')::uuid,
          result ->> 'paymentStatus', result ->> 'sessionStatus', result ->> 'message')::app_public.payment_callback_result;
$$;

-- A refused callback (conflict, receipt_reused): kept for review, nothing
-- applied; the result says so.
create or replace function app_private.refuse_payment_callback(
  checkout_request_id text, outcome text, fingerprint text, body jsonb, attempt_id uuid, session_id uuid
)
returns app_public.payment_callback_result
language sql
as $$
  insert into app_private.payment_callback_conflicts (checkout_request_id, outcome, fingerprint, body)
  values (refuse_payment_callback.checkout_request_id, refuse_payment_callback.outcome,
          refuse_payment_callback.fingerprint, refuse_payment_callback.body);
  select app_private.to_callback_result(
    app_private.payment_callback_result(refuse_payment_callback.outcome, refuse_payment_callback.attempt_id,
                                        refuse_payment_callback.session_id), false);
$$;

-- A callback whose CheckoutRequestID is in the ledger already: the same
-- content gets the stored result (and is counted); other content is refused
-- as a conflict and kept for review.
create or replace function app_private.repeated_payment_callback(entry app_private.payment_callbacks, fingerprint text, body jsonb)
returns app_public.payment_callback_result
language plpgsql
as $$
begin
  if entry.fingerprint = repeated_payment_callback.fingerprint then
    -- Only a counter: losing it in a crash loses nothing that matters.
    perform set_config('synchronous_commit', 'off', true);
    update app_private.payment_callbacks c
    set deliveries = c.deliveries + 1, last_received_at = now()
    where c.id = entry.id;
    return app_private.to_callback_result(entry.result, true);
  end if;
  return app_private.refuse_payment_callback(entry.checkout_request_id, 'conflict', repeated_payment_callback.fingerprint,
                                             repeated_payment_callback.body, entry.attempt_id, (entry.result ->> 'sessionId')::uuid);
end;
$$;

-- The payment provider's callback: records it in the idempotency ledger
-- (keyed by CheckoutRequestID) and applies it to the attempt, the payment and
-- the session, all in this one transaction; the same callback again returns
-- the stored result and changes nothing. See the outcomes in
-- app_hidden.payment_callback_outcomes. The M-Pesa endpoint
-- (server/mpesa/callback.ts) hands Daraja's callback to it, field by field.
create or replace function app_public.receive_payment_callback(
  checkout_request_id text,
  result_code integer,
  result_desc text default null,
  amount numeric default null,
  mpesa_receipt text default null,
  phone text default null,
  transaction_date text default null,
  merchant_request_id text default null,
  body jsonb default null
)
returns app_public.payment_callback_result
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_fingerprint text;
  v_entry app_private.payment_callbacks;
  v_attempt app_public.payment_attempts;
  v_outcome text;
  v_result jsonb;
  v_entry_id bigint;
begin
  perform app_private.begin_step('receive_payment_callback',
    format('M-Pesa callback %s: ResultCode %s %s', receive_payment_callback.checkout_request_id,
           receive_payment_callback.result_code, coalesce(receive_payment_callback.result_desc, '')));
  perform app_private.authorize('receive_payment_callback', null);
  if coalesce(receive_payment_callback.checkout_request_id, '') !~ '^[[:graph:]]{1,128}$' then
    perform app_private.raise_error('INVALID_ARGUMENT',
      format('Invalid argument checkout_request_id: %s. Allowed: 1 to 128 visible characters', coalesce(receive_payment_callback.checkout_request_id, 'null')),
      jsonb_build_object('argument', 'checkout_request_id'));
  end if;
  if receive_payment_callback.result_code is null then
    perform app_private.raise_error('INVALID_ARGUMENT', 'Invalid argument result_code: null. Allowed: an integer (0 is success)',
      jsonb_build_object('argument', 'result_code'));
  end if;
  -- The audit entries of this callback carry its CheckoutRequestID.
  perform set_config('flow.request_id', receive_payment_callback.checkout_request_id, true);
  v_fingerprint := md5(jsonb_build_array(
    receive_payment_callback.result_code, receive_payment_callback.result_desc, receive_payment_callback.amount,
    receive_payment_callback.mpesa_receipt, receive_payment_callback.phone, receive_payment_callback.transaction_date,
    receive_payment_callback.merchant_request_id)::text);

  -- A repeat: answered from the ledger, without locking the session.
  select * into v_entry from app_private.payment_callbacks c
  where c.checkout_request_id = receive_payment_callback.checkout_request_id;
  if found then
    perform app_private.end_step();
    return app_private.repeated_payment_callback(v_entry, v_fingerprint, receive_payment_callback.body);
  end if;

  select * into v_attempt from app_public.payment_attempts a
  where a.checkout_request_id = receive_payment_callback.checkout_request_id;
  if found then
    -- Like every flow step: the session first. Concurrent deliveries of one
    -- callback queue up here; the first one records it, the others find it.
    v_attempt := app_private.lock_attempt(v_attempt.id, 'receive_payment_callback');
  end if;

  -- Money taken once is taken once: a receipt number seen with another
  -- CheckoutRequestID is refused.
  if receive_payment_callback.mpesa_receipt is not null and exists (
    select 1 from app_private.payment_callbacks c
    where c.mpesa_receipt = receive_payment_callback.mpesa_receipt
      and c.checkout_request_id <> receive_payment_callback.checkout_request_id
  ) then
    perform app_private.end_step();
    return app_private.refuse_payment_callback(receive_payment_callback.checkout_request_id, 'receipt_reused', v_fingerprint,
                                               receive_payment_callback.body, v_attempt.id, v_attempt.session_id);
  end if;

  insert into app_private.payment_callbacks (
    checkout_request_id, merchant_request_id, result_code, result_desc, amount, mpesa_receipt, phone,
    transaction_date, fingerprint, body, attempt_id, outcome, result)
  values (
    receive_payment_callback.checkout_request_id, receive_payment_callback.merchant_request_id,
    receive_payment_callback.result_code, receive_payment_callback.result_desc, receive_payment_callback.amount,
    receive_payment_callback.mpesa_receipt, receive_payment_callback.phone, receive_payment_callback.transaction_date,
    v_fingerprint, receive_payment_callback.body, v_attempt.id, 'unknown_checkout', '{}')
  on conflict do nothing
  returning id into v_entry_id;
  if v_entry_id is null then
    -- Recorded meanwhile by a concurrent delivery (of this callback, or of
    -- one with the same receipt number).
    select * into v_entry from app_private.payment_callbacks c
    where c.checkout_request_id = receive_payment_callback.checkout_request_id;
    perform app_private.end_step();
    if not found then
      return app_private.refuse_payment_callback(receive_payment_callback.checkout_request_id, 'receipt_reused', v_fingerprint,
                                                 receive_payment_callback.body, v_attempt.id, v_attempt.session_id);
    end if;
    return app_private.repeated_payment_callback(v_entry, v_fingerprint, receive_payment_callback.body);
  end if;

  if v_attempt.id is null then
    v_outcome := 'unknown_checkout';
  else
    v_outcome := app_private.settle_attempt(
      v_attempt, receive_payment_callback.result_code, receive_payment_callback.result_desc,
      receive_payment_callback.amount, receive_payment_callback.mpesa_receipt, 'callback');
  end if;
  v_result := app_private.payment_callback_result(v_outcome, v_attempt.id, v_attempt.session_id);
  update app_private.payment_callbacks c set outcome = v_outcome, result = v_result where c.id = v_entry_id;
  perform app_private.end_step();
  return app_private.to_callback_result(v_result, false);
end;
$$;
comment on function app_public.receive_payment_callback(text, integer, text, numeric, text, text, text, text, jsonb) is
  E'@resultFieldName result\nRecords a payment provider''s callback for an STK push (keyed by its CheckoutRequestID) and applies it exactly once: the payment confirmed (amount as asked) or failed, the session with it. A repeat returns the stored result; other content under the same key is refused as a conflict. Only the payment provider may call it.';

-- Counts deliveries of callbacks that the endpoint answered from the first
-- one, identical and in flight at the same time (server/mpesa/callback.ts):
-- for each CheckoutRequestID, how many more times it arrived.
create or replace function app_private.count_repeated_callbacks(checkout_request_ids text[], repeats integer[])
returns void
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
  select app_private.authorize('receive_payment_callback', null);
  -- Only counters: losing them in a crash loses nothing that matters.
  select set_config('synchronous_commit', 'off', true);
  update app_private.payment_callbacks c
  set deliveries = c.deliveries + greatest(r.repeats, 0), last_received_at = now()
  from unnest(count_repeated_callbacks.checkout_request_ids, count_repeated_callbacks.repeats) as r (checkout_request_id, repeats)
  where c.checkout_request_id = r.checkout_request_id;
$$;
grant execute on function app_private.count_repeated_callbacks(text[], integer[]) to flow_payment_provider;

-- The worker's side (server/worker/payments.ts), as the schema owner.

-- M-Pesa accepted the push: the attempt waits for its callback. A callback
-- that arrived before this was recorded (as unknown_checkout) is applied now.
create or replace function app_private.record_stk_push(attempt_id uuid, merchant_request_id text, checkout_request_id text)
returns text
language plpgsql
as $$
declare
  v_attempt app_public.payment_attempts;
  v_entry app_private.payment_callbacks;
  v_outcome text;
begin
  perform app_private.begin_step('record_stk_push');
  v_attempt := app_private.lock_attempt(record_stk_push.attempt_id, 'record_stk_push');
  -- (An attempt abandoned meanwhile keeps its CheckoutRequestID too: money
  -- taken for it must be recognised.)
  update app_public.payment_attempts a
  set merchant_request_id = record_stk_push.merchant_request_id,
      checkout_request_id = record_stk_push.checkout_request_id,
      pushed_at = now(),
      status = case when a.status = 'requesting' then 'pending' else a.status end
  where a.id = v_attempt.id
  returning * into v_attempt;
  select * into v_entry from app_private.payment_callbacks c
  where c.checkout_request_id = record_stk_push.checkout_request_id and c.outcome = 'unknown_checkout'
  for update;
  if found then
    perform set_config('flow.reason', format('M-Pesa callback %s (received before the push was recorded): ResultCode %s',
                                             v_entry.checkout_request_id, v_entry.result_code), true);
    v_outcome := app_private.settle_attempt(v_attempt, v_entry.result_code, v_entry.result_desc, v_entry.amount,
                                            v_entry.mpesa_receipt, 'callback');
    update app_private.payment_callbacks c
    set attempt_id = v_attempt.id, outcome = v_outcome,
        result = app_private.payment_callback_result(v_outcome, v_attempt.id, v_attempt.session_id)
    where c.id = v_entry.id;
  end if;
  perform app_private.end_step();
  return coalesce(v_outcome, v_attempt.status);
end;
$$;

-- Settles an open attempt with the provider's answer to a push (refused) or
-- to an STK push query, or gives up on it (timeout: no result code); returns
-- the outcome. An attempt already settled is left as it is.
create or replace function app_private.settle_payment_attempt(attempt_id uuid, result_code integer, result_desc text, source text)
returns text
language plpgsql
as $$
declare
  v_attempt app_public.payment_attempts;
  v_outcome text;
begin
  perform app_private.begin_step('settle_payment_attempt',
    case settle_payment_attempt.source
      when 'timeout' then format('No answer from M-Pesa: %s', settle_payment_attempt.result_desc)
      else format('M-Pesa %s: ResultCode %s %s', case settle_payment_attempt.source when 'push' then 'refused the STK push' else 'STK push query' end,
                  settle_payment_attempt.result_code, coalesce(settle_payment_attempt.result_desc, ''))
    end);
  v_attempt := app_private.lock_attempt(settle_payment_attempt.attempt_id, 'settle_payment_attempt');
  if v_attempt.settled_at is not null then
    perform app_private.end_step();
    return 'already_settled';
  end if;
  if settle_payment_attempt.source = 'timeout' then
    update app_public.payment_attempts a
    set status = 'failed', result_desc = settle_payment_attempt.result_desc, settled_by = 'timeout', settled_at = now()
    where a.id = v_attempt.id;
    perform app_private.apply_payment_outcome(v_attempt.session_id, 'failed');
    v_outcome := 'failed';
  else
    -- The query does not tell the amount: it is the amount asked.
    v_outcome := app_private.settle_attempt(v_attempt, settle_payment_attempt.result_code, settle_payment_attempt.result_desc,
                                            v_attempt.amount_kes, null, settle_payment_attempt.source);
  end if;
  perform app_private.end_step();
  return v_outcome;
end;
$$;

-- Queues the STK push job of every attempt waiting for one (committed, so
-- the push never runs for a step that rolled back); returns how many. Run
-- by the server's dispatcher when the flow changes, and by the sweep.
create or replace function app_private.queue_stk_pushes(max_attempts integer default 500)
returns integer
language plpgsql
as $$
declare
  v_count integer;
begin
  with waiting as (
    select a.id from app_public.payment_attempts a
    where a.status = 'requesting' and a.push_queued_at is null
    order by a.created_at
    limit queue_stk_pushes.max_attempts
    for update skip locked
  ), queued as (
    update app_public.payment_attempts a set push_queued_at = now()
    from waiting w where a.id = w.id
    returning a.id
  )
  select count(graphile_worker.add_job('mpesa_stk_push', json_build_object('attemptId', q.id),
                                       max_attempts := 5, job_key := 'mpesa_stk_push:' || q.id))
  into v_count
  from queued q;
  return v_count;
end;
$$;

-- Queues the job that settles an attempt (by asking the provider), to run
-- after the given wait; one per attempt (the job key): it replaces the one
-- queued before, or, keeping_earlier, leaves that one's time as it is. Used
-- by the worker after a push and after "still being processed", and by the
-- sweep below.
create or replace function app_private.settle_attempt_later(attempt_id uuid, wait interval, keeping_earlier boolean default false)
returns void
language plpgsql
as $$
begin
  perform graphile_worker.add_job('mpesa_settle_attempt', json_build_object('attemptId', settle_attempt_later.attempt_id),
                                  run_at := now() + settle_attempt_later.wait,
                                  job_key := 'mpesa_settle_attempt:' || settle_attempt_later.attempt_id,
                                  job_key_mode := case when settle_attempt_later.keeping_earlier then 'preserve_run_at' else 'replace' end);
end;
$$;

-- The sweep: queues a settling job for every open attempt older than
-- query_after (the job key keeps one per attempt); returns how many.
create or replace function app_private.queue_payment_settlements(query_after interval)
returns integer
language plpgsql
as $$
declare
  v_count integer;
begin
  select count(app_private.settle_attempt_later(a.id, interval '0', keeping_earlier => true))
  into v_count
  from app_public.payment_attempts a
  where a.settled_at is null and a.created_at < now() - queue_payment_settlements.query_after;
  return v_count;
end;
$$;
--! EndIncluded 43_payment_attempts.sql
--! Included 45_required_actions_outbox.sql
-- The required actions as an outbox (tables: 20_integrations.sql): listed,
-- claimed by one consumer at a time for a lease, completed with a result; a
-- claim not completed in time returns to the queue. Every status change is
-- checked against app_hidden.required_action_transitions and audited (so it
-- is in the change feed, as required_action.<status>).

create or replace function app_private.tg_required_actions__status() returns trigger
language plpgsql
as $$
begin
  if tg_op = 'INSERT' then
    if new.status <> 'open' then
      perform app_private.raise_error('INVALID_INITIAL_STATE',
        format('Invalid required_action initial state: %s. Allowed: [open]', new.status),
        jsonb_build_object('entity', 'required_action', 'to', new.status, 'allowed', jsonb_build_array('open')));
    end if;
  elsif not exists (
    select 1 from app_hidden.required_action_transitions t where t.from_status = old.status and t.to_status = new.status
  ) then
    perform app_private.raise_error('INVALID_STATE_TRANSITION',
      format('Invalid required_action transition: %s → %s. Allowed: [%s]', old.status, new.status,
             (select string_agg(t.to_status, ', ' order by t.to_status) from app_hidden.required_action_transitions t where t.from_status = old.status)),
      jsonb_build_object('entity', 'required_action', 'id', new.id, 'from', old.status, 'to', new.status,
                         'allowed', (select coalesce(jsonb_agg(t.to_status order by t.to_status), '[]') from app_hidden.required_action_transitions t where t.from_status = old.status)));
  end if;
  insert into app_public.audit_entries
    (entity_type, entity_id, session_id, old_value, new_value, step, reason, actor, request_id)
  values ('required_action', new.uid, new.session_id, case when tg_op = 'UPDATE' then old.status end, new.status,
          nullif(current_setting('flow.step', true), ''), nullif(current_setting('flow.reason', true), ''),
          coalesce(nullif(current_setting('flow.actor', true), ''), session_user),
          nullif(current_setting('flow.request_id', true), ''));
  perform pg_notify('flow_changes', new.session_id::text);
  return new;
end;
$$;
comment on function app_private.tg_required_actions__status() is
  'Checks a required action''s status change against its small state machine, and audits it.';
create or replace trigger _100_status_insert
  before insert on app_public.required_actions
  for each row execute function app_private.tg_required_actions__status();
create or replace trigger _100_status_update
  before update of status on app_public.required_actions
  for each row when (old.status is distinct from new.status)
  execute function app_private.tg_required_actions__status();

-- The consumer: the one named, or else the caller (user id, or role).
create or replace function app_private.action_consumer(consumer text)
returns text
language sql
stable
as $$
  select coalesce(nullif(trim(action_consumer.consumer), ''), app_public.current_user_id()::text, app_private.current_api_role(), session_user);
$$;

-- Returns expired claims to the queue (audited, with the reason); how many.
create or replace function app_private.release_expired_claims()
returns integer
language plpgsql
as $$
declare
  v_count integer;
begin
  perform set_config('flow.reason', 'The claim expired without completion.', true);
  with expired as (
    select a.id from app_public.required_actions a
    where a.status = 'claimed' and a.claim_expires_at < now()
    order by a.id
    for update skip locked
  )
  update app_public.required_actions a
  set status = 'open', claimed_by = null, claim_expires_at = null
  from expired e where a.id = e.id;
  get diagnostics v_count = row_count;
  perform set_config('flow.reason', '', true);
  return v_count;
end;
$$;

-- Claims up to max_actions open actions (oldest first; of the given kinds,
-- if any), for lease_seconds. Two consumers never get the same action.
create or replace function app_public.claim_required_actions(
  consumer text default null,
  max_actions integer default 10,
  lease_seconds integer default 60,
  actions text[] default null
)
returns setof app_public.required_actions
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_consumer text;
begin
  perform app_private.begin_step('claim_required_actions');
  perform app_private.authorize('claim_required_actions', null);
  v_consumer := app_private.action_consumer(claim_required_actions.consumer);
  if coalesce(claim_required_actions.max_actions, 0) not between 1 and 1000 then
    perform app_private.raise_error('INVALID_ARGUMENT',
      format('Invalid argument max_actions: %s. Allowed: 1 to 1000', claim_required_actions.max_actions),
      jsonb_build_object('argument', 'max_actions'));
  end if;
  if coalesce(claim_required_actions.lease_seconds, 0) not between 1 and 86400 then
    perform app_private.raise_error('INVALID_ARGUMENT',
      format('Invalid argument lease_seconds: %s. Allowed: 1 to 86400', claim_required_actions.lease_seconds),
      jsonb_build_object('argument', 'lease_seconds'));
  end if;
  perform app_private.release_expired_claims();
  perform set_config('flow.reason', format('Claimed by %s for %s s.', v_consumer, claim_required_actions.lease_seconds), true);
  return query
  with next as (
    select a.id from app_public.required_actions a
    where a.status = 'open' and (claim_required_actions.actions is null or a.action = any (claim_required_actions.actions))
    order by a.id
    limit claim_required_actions.max_actions
    for update skip locked
  )
  update app_public.required_actions a
  set status = 'claimed', claimed_by = v_consumer,
      claim_expires_at = now() + make_interval(secs => claim_required_actions.lease_seconds), claims = a.claims + 1
  from next where a.id = next.id
  returning a.*;
  perform app_private.end_step();
end;
$$;
comment on function app_public.claim_required_actions(text, integer, integer, text[]) is
  E'@resultFieldName requiredActions\nClaims up to max_actions open required actions, oldest first (only those of the given kinds, when given), for lease_seconds: no other consumer gets them meanwhile; one not completed in time returns to the queue. consumer defaults to the caller.';

-- Ends a claim the consumer holds (ACTION_NOT_CLAIMED otherwise): the
-- action completed with its result, or released to the queue. The one body
-- of complete_required_action and release_required_action.
create or replace function app_private.end_claim(step text, action_id bigint, consumer text, to_status text, result jsonb)
returns app_public.required_actions
language plpgsql
as $$
declare
  v_consumer text := app_private.action_consumer(end_claim.consumer);
  v_action app_public.required_actions;
begin
  perform app_private.begin_step(end_claim.step);
  perform app_private.authorize(end_claim.step, null);
  select * into v_action from app_public.required_actions a where a.id = end_claim.action_id for update;
  if not found then
    perform app_private.raise_error('NOT_FOUND', format('Required action not found: %s', end_claim.action_id),
                                    jsonb_build_object('entity', 'required_action', 'id', end_claim.action_id));
  end if;
  if v_action.status <> 'claimed' or v_action.claimed_by <> v_consumer then
    perform app_private.raise_error('ACTION_NOT_CLAIMED',
      format('Required action %s is not claimed by %s: %s', v_action.id, v_consumer,
             case v_action.status when 'claimed' then 'claimed by ' || v_action.claimed_by else v_action.status end),
      jsonb_build_object('entity', 'required_action', 'id', v_action.id, 'status', v_action.status));
  end if;
  update app_public.required_actions a
  set status = end_claim.to_status, claimed_by = null, claim_expires_at = null,
      completed_at = case when end_claim.to_status = 'completed' then now() end,
      result = case when end_claim.to_status = 'completed' then end_claim.result end
  where a.id = v_action.id
  returning * into v_action;
  perform app_private.end_step();
  return v_action;
end;
$$;

drop function if exists app_private.lock_claimed_action(bigint, text); -- (now in end_claim)

create or replace function app_public.complete_required_action(action_id bigint, result jsonb default null, consumer text default null)
returns app_public.required_actions
language sql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
  select app_private.end_claim('complete_required_action', complete_required_action.action_id,
                               complete_required_action.consumer, 'completed', complete_required_action.result);
$$;
comment on function app_public.complete_required_action(bigint, jsonb, text) is
  E'@resultFieldName requiredAction\nCompletes a required action the consumer holds a claim on, with its result. ACTION_NOT_CLAIMED when the consumer does not hold it (its claim expired and another took it, say).';

create or replace function app_public.release_required_action(action_id bigint, consumer text default null)
returns app_public.required_actions
language sql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
  select app_private.end_claim('release_required_action', release_required_action.action_id,
                               release_required_action.consumer, 'open', null);
$$;
comment on function app_public.release_required_action(bigint, text) is
  E'@resultFieldName requiredAction\nGives a claimed required action back to the queue, for another consumer.';
--! EndIncluded 45_required_actions_outbox.sql
--! Included 46_webhooks.sql
-- Webhooks (tables: 20_integrations.sql). A webhook reads the change feed
-- from where it was registered, on its own cursor: each matching event
-- becomes a delivery, queued for graphile-worker (server/worker/webhooks.ts)
-- in the same transaction that moves the cursor on, so no event is missed
-- or queued twice. Deliveries are signed with the webhook's secret (README,
-- "Webhooks").

-- Whether an event type (payment.confirmed) matches one of the patterns
-- (payment.confirmed, payment.*, *).
create or replace function app_private.event_matches(event_type text, patterns text[])
returns boolean
language sql
immutable
as $$
  select '*' = any (event_matches.patterns)
      or event_matches.event_type = any (event_matches.patterns)
      or split_part(event_matches.event_type, '.', 1) || '.*' = any (event_matches.patterns);
$$;

create or replace function app_public.register_webhook(url text, event_types text[])
returns app_public.webhook_registration
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_hook app_private.webhooks;
  v_schema text;
  v_table text;
  v_constraint text;
  v_column text;
begin
  perform app_private.authorize('register_webhook', null);
  begin
    insert into app_private.webhooks (url, event_types, secret, registered_by, cursor)
    values (register_webhook.url, register_webhook.event_types,
            -- 244 random bits (gen_random_uuid draws from the strong random source).
            'whsec_' || replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''),
            coalesce(nullif(current_setting('flow.actor', true), ''), session_user),
            app_public.change_feed_now())
    returning * into v_hook;
  exception when check_violation or not_null_violation then
    get stacked diagnostics v_schema = schema_name, v_table = table_name, v_constraint = constraint_name, v_column = column_name;
    perform app_private.raise_invalid_argument(v_schema, v_table, v_constraint, v_column);
  end;
  return (v_hook.id, v_hook.url, v_hook.event_types, v_hook.secret)::app_public.webhook_registration;
end;
$$;
comment on function app_public.register_webhook(text, text[]) is
  E'@resultFieldName webhook\nRegisters a URL for the change events of the given types (payment.confirmed, payment.*, required_action.open, *), from now on. Returns its signing secret, once.';

create or replace function app_public.unregister_webhook(webhook_id uuid)
returns boolean
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform app_private.authorize('register_webhook', null);
  update app_private.webhooks w set active = false where w.id = unregister_webhook.webhook_id and w.active;
  return found;
end;
$$;
comment on function app_public.unregister_webhook(uuid) is 'Stops a webhook''s deliveries (those under way finish).';

-- Queues a delivery's job (one per delivery: the job key), at run_at.
create or replace function app_private.deliver_webhook_later(delivery_id bigint, run_at timestamptz default now())
returns void
language plpgsql
as $$
begin
  perform graphile_worker.add_job('webhook_deliver', json_build_object('deliveryId', deliver_webhook_later.delivery_id),
                                  run_at := deliver_webhook_later.run_at,
                                  job_key := 'webhook_deliver:' || deliver_webhook_later.delivery_id);
end;
$$;

-- Moves every active webhook's cursor on by up to max_events, queueing a
-- delivery job for each matching event; returns how many events it read.
-- Run as the schema owner (it reads every session's changes). Concurrent
-- dispatchers skip a webhook another is moving.
create or replace function app_private.dispatch_webhooks(max_events integer default 500)
returns integer
language plpgsql
as $$
declare
  v_hook app_private.webhooks;
  v_page app_public.change_feed_page;
  v_read integer := 0;
  v_delivery bigint;
  v_event app_public.change_event;
begin
  for v_hook in
    select * from app_private.webhooks w where w.active order by w.created_at for update skip locked
  loop
    v_page := app_public.change_feed(v_hook.cursor, dispatch_webhooks.max_events);
    foreach v_event in array v_page.events loop
      v_read := v_read + 1;
      continue when not app_private.event_matches(v_event.event_type, v_hook.event_types);
      insert into app_private.webhook_deliveries (webhook_id, event_id, event)
      values (v_hook.id, v_event.id, jsonb_build_object(
        'id', v_event.id, 'type', v_event.event_type, 'cursor', v_event.cursor, 'createdAt', v_event.created_at,
        'data', jsonb_build_object(
          'sessionId', v_event.session_id, 'entityType', v_event.entity_type, 'entityId', v_event.entity_id,
          'oldValue', v_event.old_value, 'newValue', v_event.new_value, 'step', v_event.step,
          'reason', v_event.reason, 'actor', v_event.actor, 'requestId', v_event.request_id)))
      on conflict (webhook_id, event_id) do nothing
      returning id into v_delivery;
      if v_delivery is not null then
        perform app_private.deliver_webhook_later(v_delivery);
      end if;
    end loop;
    update app_private.webhooks w set cursor = v_page.cursor where w.id = v_hook.id;
  end loop;
  return v_read;
end;
$$;

-- Records one attempt to deliver: delivered; or not, and tried again at
-- retry_at (its job queued here, under the delivery's job key); or, without
-- retry_at, failed for good.
drop function if exists app_private.record_webhook_attempt(bigint, integer, timestamptz, integer, integer, text, boolean, boolean);
create or replace function app_private.record_webhook_attempt(
  delivery_id bigint, attempt_no integer, started_at timestamptz, duration_ms integer,
  status_code integer, error text, delivered boolean, retry_at timestamptz
)
returns void
language plpgsql
as $$
begin
  insert into app_private.webhook_attempts (delivery_id, attempt_no, started_at, duration_ms, status_code, error)
  values (record_webhook_attempt.delivery_id, record_webhook_attempt.attempt_no, record_webhook_attempt.started_at,
          record_webhook_attempt.duration_ms, record_webhook_attempt.status_code, record_webhook_attempt.error);
  update app_private.webhook_deliveries d
  set attempts = record_webhook_attempt.attempt_no,
      status = case when record_webhook_attempt.delivered then 'delivered'
                    when record_webhook_attempt.retry_at is null then 'failed' else 'pending' end,
      delivered_at = case when record_webhook_attempt.delivered then now() end
  where d.id = record_webhook_attempt.delivery_id;
  if not record_webhook_attempt.delivered and record_webhook_attempt.retry_at is not null then
    perform app_private.deliver_webhook_later(record_webhook_attempt.delivery_id, record_webhook_attempt.retry_at);
  end if;
end;
$$;

-- What the server's dispatcher runs when the flow changes: the STK pushes
-- to queue, and the webhooks to move along; returns how much it did (it is
-- run again while that is a full batch).
create or replace function app_private.dispatch(max_items integer default 500)
returns integer
language sql
as $$
  select greatest(app_private.queue_stk_pushes(dispatch.max_items), app_private.dispatch_webhooks(dispatch.max_items));
$$;
--! EndIncluded 46_webhooks.sql
--! Included 60_grants_and_rls.sql
-- Privileges. The API connects as flow_authenticator (which can do nothing
-- by itself: NOINHERIT) and runs each request as one of the API roles:
--   flow_anonymous         no token: may read nothing;
--   flow_client, flow_therapist, flow_admin
--                          read the sessions row-level security lets them
--                          see, and take the flow steps step_permissions
--                          allows (the steps write as the schema owner);
--   flow_payment_provider  records payment outcomes;
--   flow_integration       reads every session's flow, works through the
--                          required actions, registers webhooks.
-- The roles are cluster-wide; server/db/setup.ts creates them (README,
-- "Roles"). The API roles own nothing and cannot bypass row-level security.

-- The API connects to this database as flow_authenticator (a database
-- created by `graphile-migrate reset` lets nobody else connect).
do $$
begin
  execute format('grant connect on database %I to flow_authenticator', current_database());
end;
$$;

-- Schemas: only app_public is reachable; app_hidden and app_private are
-- used through the SECURITY DEFINER steps.
revoke all on schema app_public, app_hidden, app_private from public;
grant usage on schema app_public
  to flow_anonymous, flow_client, flow_therapist, flow_admin, flow_payment_provider, flow_integration, flow_authenticator;

-- Tables: read-only (every write goes through a flow step). Anonymous
-- requests read nothing; the payment provider may query (its mutations
-- return the session) but row-level security shows it no row.
revoke all on all tables in schema app_public from public;
revoke all on all tables in schema app_public
  from flow_anonymous, flow_client, flow_therapist, flow_admin, flow_payment_provider, flow_integration, flow_authenticator;
grant select on
  app_public.sessions, app_public.payments, app_public.video_calls, app_public.session_forms,
  app_public.audit_entries, app_public.required_actions, app_public.payment_attempts,
  app_public.payment_states, app_public.session_states, app_public.video_call_states, app_public.form_states
  to flow_client, flow_therapist, flow_admin, flow_payment_provider, flow_integration;
-- The state lookup tables are the API's enums: it reads them when it starts.
grant select on
  app_public.payment_states, app_public.session_states, app_public.video_call_states, app_public.form_states
  to flow_authenticator;

-- Functions: nothing by default. Every flow step (and the payment callback,
-- the outbox's and the webhooks' functions, the change feed) may be called
-- by every API role: the step itself says who may take it
-- (app_private.authorize), with a clear NOT_AUTHORIZED rather than a bare
-- "permission denied".
revoke all on all functions in schema app_public, app_hidden, app_private from public;
grant execute on function app_public.current_user_id() to flow_client, flow_therapist, flow_admin, flow_payment_provider, flow_integration;
do $$
declare
  v_fn regprocedure;
begin
  for v_fn in
    select p.oid::regprocedure
    from pg_proc p join pg_namespace n on n.oid = p.pronamespace and n.nspname = 'app_public'
    where p.prorettype in ('app_public.sessions'::regtype, 'app_public.payment_callback_result'::regtype,
                           'app_public.required_actions'::regtype, 'app_public.webhook_registration'::regtype,
                           'app_public.change_feed_page'::regtype)
       or p.oid in ('app_public.unregister_webhook(uuid)'::regprocedure, 'app_public.change_feed_now()'::regprocedure)
  loop
    execute format('grant execute on function %s to flow_anonymous, flow_client, flow_therapist, flow_admin, flow_payment_provider, flow_integration', v_fn);
  end loop;
end;
$$;

-- Row-level security on every table of app_public. (The schema owner, who
-- runs the flow steps and the triggers, is not subject to it.)
do $$
declare
  v_table text;
begin
  foreach v_table in array array[
    'sessions', 'payments', 'video_calls', 'session_forms', 'audit_entries', 'required_actions', 'payment_attempts',
    'payment_states', 'session_states', 'video_call_states', 'form_states'
  ] loop
    execute format('alter table app_public.%I enable row level security', v_table);
    execute format('drop policy if exists select_visible on app_public.%I', v_table);
  end loop;
end;
$$;

-- A client sees their sessions, a therapist theirs, an admin all...
create policy select_visible on app_public.sessions for select
  using (app_private.can_see_session(client_id, therapist_id));
-- ...and everything under them.
create policy select_visible on app_public.payments for select
  using (exists (select 1 from app_public.sessions s where s.id = session_id));
create policy select_visible on app_public.video_calls for select
  using (exists (select 1 from app_public.sessions s where s.id = session_id));
create policy select_visible on app_public.session_forms for select
  using (exists (select 1 from app_public.sessions s where s.id = session_id));
create policy select_visible on app_public.audit_entries for select
  using (exists (select 1 from app_public.sessions s where s.id = session_id));
create policy select_visible on app_public.required_actions for select
  using (exists (select 1 from app_public.sessions s where s.id = session_id));
create policy select_visible on app_public.payment_attempts for select
  using (exists (select 1 from app_public.sessions s where s.id = session_id));
-- The states are no secret to anyone who may read.
create policy select_visible on app_public.payment_states for select using (true);
create policy select_visible on app_public.session_states for select using (true);
create policy select_visible on app_public.video_call_states for select using (true);
create policy select_visible on app_public.form_states for select using (true);

grant execute on function app_private.can_see_session(uuid, uuid), app_private.current_api_role()
  to flow_client, flow_therapist, flow_admin, flow_payment_provider, flow_integration;
grant usage on schema app_private to flow_client, flow_therapist, flow_admin, flow_payment_provider, flow_integration;

-- The change feed reads as its caller (row-level security), with these helpers.
-- (Anonymous requests read nothing, the change feed included.)
grant execute on function app_private.to_change_event(app_public.audit_entries, text)
  to flow_client, flow_therapist, flow_admin, flow_payment_provider, flow_integration;
grant execute on function app_private.parse_feed_cursor(text)
  to flow_client, flow_therapist, flow_admin, flow_payment_provider, flow_integration;

-- Integrations read what admins read (the API's reads granted in
-- 62_api_reads.sql and 63_api_rule_queries.sql included: run this file again
-- after changing those grants).
do $$
declare
  v_fn regprocedure;
begin
  for v_fn in
    select p.oid::regprocedure
    from pg_proc p join pg_namespace n on n.oid = p.pronamespace and n.nspname = 'app_public'
    where has_function_privilege('flow_admin', p.oid, 'execute')
  loop
    execute format('grant execute on function %s to flow_integration', v_fn);
  end loop;
end;
$$;
--! EndIncluded 60_grants_and_rls.sql
