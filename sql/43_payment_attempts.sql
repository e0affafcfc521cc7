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
