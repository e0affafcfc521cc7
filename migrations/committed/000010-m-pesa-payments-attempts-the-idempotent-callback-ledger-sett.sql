--! Previous: sha1:7dbc4f99ef49c749aa4200604427d36094c03523
--! Hash: sha1:3d13a02fb88f70963f07cafb6cfcfeab5a0e76f0
--! Message: M-Pesa payments: attempts, the idempotent callback ledger, settling without a callback

--! Included 19_payment_attempts.sql
-- M-Pesa payments (Lipa na M-Pesa Online, "STK push"): the attempts to take
-- a payment, and the ledger of what the provider told us about them.

-- The kinds of required action, listed once: what each asks of whoever works
-- through the outbox (app_public.required_actions).
create table app_hidden.required_action_types (
  action text primary key,
  meaning text not null
);
comment on table app_hidden.required_action_types is
  'Every kind of required action the rules or the payment callbacks raise.';
insert into app_hidden.required_action_types (action, meaning) values
  ('ALERT_CLIENT_RETRY', 'The payment failed: tell the client, who may pay again (initiatePayment).'),
  ('RECONCILE_PAYMENT_AMOUNT', 'M-Pesa took an amount other than the price: the payment was not confirmed; settle the difference by hand (refund, or confirm).'),
  ('REFUND_OR_RECONCILE_PAYMENT', 'M-Pesa took money for an attempt that no longer counts (superseded, timed out, or the payment already cancelled or confirmed): refund it, or apply it by hand.');
alter table app_hidden.payment_state_actions
  add constraint payment_state_actions_action_fkey foreign key (action) references app_hidden.required_action_types;
alter table app_public.required_actions
  add constraint required_actions_action_fkey foreign key (action) references app_hidden.required_action_types,
  add column detail jsonb;
comment on column app_public.required_actions.detail is
  'What the action needs to know, e.g. the amount expected and the amount taken.';

-- One attempt per STK push. Initiating a payment (pending → initiated, or the
-- retry failed → initiated) opens an attempt; the attempt is settled once,
-- by the provider's callback, by asking the provider (STK push query), or by
-- giving up; a retry opens a new attempt, and the old ones are kept.
--   requesting       opened; the push is queued (graphile-worker)
--   pending          M-Pesa accepted the push: CheckoutRequestID known
--   confirmed        the payer paid the amount asked
--   failed           M-Pesa refused the push, or the payer did not pay
--   amount_mismatch  M-Pesa took another amount: not confirmed, to reconcile
--   abandoned        the payment left `initiated` some other way (cancelled,
--                    or an outcome recorded by hand)
create table app_public.payment_attempts (
  id uuid primary key default gen_random_uuid(),
  payment_id uuid not null references app_public.payments,
  session_id uuid not null references app_public.sessions,
  attempt_no integer not null,
  phone text not null,
  amount_kes integer not null,
  status text not null default 'requesting'
    constraint payment_attempts_status_known check (status in ('requesting', 'pending', 'confirmed', 'failed', 'amount_mismatch', 'abandoned')),
  merchant_request_id text,
  checkout_request_id text unique,
  result_code integer,
  result_desc text,
  mpesa_receipt text unique,
  settled_by text
    constraint payment_attempts_settled_by_known check (settled_by in ('push', 'callback', 'query', 'timeout', 'payment_status')),
  created_at timestamptz not null default now(),
  pushed_at timestamptz,
  settled_at timestamptz,
  unique (payment_id, attempt_no),
  constraint payment_attempts_settled_consistently check (
    (status in ('requesting', 'pending')) = (settled_at is null)
    and (settled_at is null) = (settled_by is null)),
  constraint payment_attempts_pending_has_checkout check (status <> 'pending' or checkout_request_id is not null)
);
-- At most one open attempt per payment: the one the payment is waiting for.
create unique index payment_attempts_one_open_idx on app_public.payment_attempts (payment_id) where settled_at is null;
create index payment_attempts_session_id_idx on app_public.payment_attempts (session_id);
create index payment_attempts_open_idx on app_public.payment_attempts (created_at) where settled_at is null;
comment on table app_public.payment_attempts is
  'One M-Pesa STK push for a payment, and how it ended. A retry is a new attempt; attempts are kept.';
comment on column app_public.payment_attempts.status is
  'requesting, pending (the prompt is on the phone), confirmed, failed, amount_mismatch (to reconcile) or abandoned.';
comment on column app_public.payment_attempts.checkout_request_id is 'M-Pesa''s CheckoutRequestID: the key of its callbacks.';
comment on column app_public.payment_attempts.result_code is 'M-Pesa''s ResultCode (0 paid; app_hidden.mpesa_result_codes).';
comment on column app_public.payment_attempts.mpesa_receipt is 'The M-Pesa receipt number of the money taken.';
comment on column app_public.payment_attempts.settled_by is
  'What settled it: push (refused), callback, query (STK push query), timeout (no answer in time), payment_status (the payment moved on).';

-- M-Pesa's result codes that we know (any other non-zero code is a failure
-- too). The simulator and the tests use this list.
create table app_hidden.mpesa_result_codes (
  result_code integer primary key,
  meaning text not null
);
comment on table app_hidden.mpesa_result_codes is 'M-Pesa STK result codes: 0 is success, every other one a failure.';
insert into app_hidden.mpesa_result_codes (result_code, meaning) values
  (0, 'The payment was made.'),
  (1, 'Insufficient balance.'),
  (17, 'Provider-side failure.'),
  (26, 'Provider-side failure (system busy).'),
  (1001, 'The subscriber is busy with another session.'),
  (1019, 'The transaction expired.'),
  (1032, 'Cancelled by the user.'),
  (1037, 'The user could not be reached.'),
  (2001, 'Wrong PIN.'),
  (9999, 'Provider-side failure.');

-- What a callback did, as data: the answer the endpoint gives, and whether it
-- changed the flow. app_private.receive_payment_callback decides which.
create table app_hidden.payment_callback_outcomes (
  outcome text primary key,
  applied boolean not null,
  acknowledged boolean not null,
  meaning text not null
);
comment on table app_hidden.payment_callback_outcomes is
  'What can become of a payment callback: applied to the flow or not, acknowledged (HTTP 200) or refused (409).';
insert into app_hidden.payment_callback_outcomes (outcome, applied, acknowledged, meaning) values
  ('confirmed', true, true, 'Paid the amount asked: payment confirmed, session paid and on to forms_required or ready.'),
  ('failed', true, true, 'Not paid: payment failed, ALERT_CLIENT_RETRY raised; the client may retry.'),
  ('amount_mismatch', false, true, 'Paid another amount: not confirmed; RECONCILE_PAYMENT_AMOUNT raised; the payment stays initiated.'),
  ('late_success', false, true, 'Paid, for an attempt that no longer counts (superseded, timed out, payment cancelled or confirmed): REFUND_OR_RECONCILE_PAYMENT raised.'),
  ('late_failure', false, true, 'A failure for an attempt already settled: nothing to do.'),
  ('already_settled', false, true, 'Agrees with how the attempt was already settled (by an STK push query): nothing to do.'),
  ('unknown_checkout', false, true, 'No attempt has this CheckoutRequestID (yet): recorded; applied if the push it answers is recorded later.'),
  ('conflict', false, false, 'A callback for this CheckoutRequestID was received before with a different body: refused, kept for review.'),
  ('receipt_reused', false, false, 'The M-Pesa receipt number was already used by another CheckoutRequestID: refused, kept for review.');

-- The idempotency ledger: one row per CheckoutRequestID, the first callback
-- received for it, what it did and the result given. A repeat with the same
-- content gets the stored result; one with other content is a conflict.
create table app_private.payment_callbacks (
  id bigint generated always as identity primary key,
  checkout_request_id text not null unique,
  merchant_request_id text,
  result_code integer not null,
  result_desc text,
  amount numeric,
  mpesa_receipt text unique,
  phone text,
  transaction_date text,
  fingerprint text not null,
  body jsonb,
  attempt_id uuid references app_public.payment_attempts,
  outcome text not null references app_hidden.payment_callback_outcomes,
  result jsonb not null,
  deliveries integer not null default 1,
  received_at timestamptz not null default now(),
  last_received_at timestamptz not null default now()
);
comment on table app_private.payment_callbacks is
  'The payment callback ledger: the first callback for each CheckoutRequestID, its outcome and the result returned.';
comment on column app_private.payment_callbacks.fingerprint is 'A hash of the callback''s content: a repeat must match it.';
comment on column app_private.payment_callbacks.deliveries is 'How many times this same callback arrived.';

-- Callbacks refused (conflict, receipt_reused), kept for someone to review.
create table app_private.payment_callback_conflicts (
  id bigint generated always as identity primary key,
  checkout_request_id text not null,
  outcome text not null references app_hidden.payment_callback_outcomes,
  fingerprint text not null,
  body jsonb,
  received_at timestamptz not null default now()
);
create index payment_callback_conflicts_checkout_idx on app_private.payment_callback_conflicts (checkout_request_id);
comment on table app_private.payment_callback_conflicts is
  'Payment callbacks refused as conflicting with an earlier one, for review.';

-- Payment callbacks come from the payment provider only.
insert into app_hidden.step_permissions (step, role, scope, note) values
  ('receive_payment_callback', 'payment_provider', 'any', 'Only the payment provider reports what became of a payment attempt.');

create type app_public.payment_callback_result as (
  outcome text,
  acknowledged boolean,
  duplicate boolean,
  session_id uuid,
  attempt_id uuid,
  payment_status text,
  session_status text,
  message text
);
comment on type app_public.payment_callback_result is
  'What a payment callback did (outcome, see the README), whether it is acknowledged, whether it repeats one received before (then the stored result is returned), and the flow after it.';
--! EndIncluded 19_payment_attempts.sql
--! Included 40_flow_steps.sql
-- The flow steps: each is one call, so one transaction, that leaves every rule
-- satisfied or changes nothing. They move the entities; the triggers decide
-- whether a move is allowed, so no step repeats a rule. Each step locks the
-- session row first (FOR NO KEY UPDATE): two steps on one session queue up
-- behind that lock instead of deadlocking on its payment or call. Then it
-- checks who is calling (app_hidden.step_permissions). The steps run as the
-- schema owner (SECURITY DEFINER, with a pinned search_path): the API's
-- roles may read their rows but write nothing directly.

-- Marks the changes that follow as made by a flow step (audit_entries.step),
-- and records the step's reason when one is given; end_step puts back the
-- reason the transaction had before, for whatever it does next.
create or replace function app_private.begin_step(step text, reason text default null)
returns void
language sql
as $$
  select set_config('flow.step', begin_step.step, true);
  select set_config('flow.reason_before_step', coalesce(current_setting('flow.reason', true), ''), true);
  select set_config('flow.reason', begin_step.reason, true) where begin_step.reason is not null;
$$;

create or replace function app_private.end_step()
returns void
language sql
as $$
  select set_config('flow.step', '', true);
  select set_config('flow.reason', coalesce(current_setting('flow.reason_before_step', true), ''), true);
$$;

drop function if exists app_private.lock_session(uuid); -- (before it took the step)

-- Locks the session, checks that the caller may take the step on it
-- (app_private.authorize), and returns it; NOT_FOUND when there is none.
create or replace function app_private.lock_session(session_id uuid, step text)
returns app_public.sessions
language plpgsql
as $$
declare
  v_session app_public.sessions;
begin
  perform app_private.authorize(lock_session.step, null);
  select * into v_session from app_public.sessions s where s.id = lock_session.session_id for no key update;
  if not found then
    perform app_private.raise_error(
      'NOT_FOUND', format('Session not found: %s', lock_session.session_id),
      jsonb_build_object('entity', 'session', 'id', lock_session.session_id));
  end if;
  perform app_private.authorize(lock_session.step, v_session);
  return v_session;
end;
$$;

create or replace function app_private.set_session_status(session_id uuid, status text)
returns void
language sql
as $$
  update app_public.sessions s set status = set_session_status.status
  where s.id = set_session_status.session_id;
$$;

create or replace function app_private.set_payment_status(session_id uuid, status text)
returns void
language sql
as $$
  update app_public.payments p set status = set_payment_status.status
  where p.session_id = set_payment_status.session_id;
$$;

create or replace function app_private.set_video_status(session_id uuid, status text)
returns void
language sql
as $$
  update app_public.video_calls v set status = set_video_status.status
  where v.session_id = set_video_status.session_id;
$$;

-- Ends the call of a session that is closing, when it is not over already.
create or replace function app_private.end_call(session_id uuid)
returns void
language sql
as $$
  update app_public.video_calls v set status = 'ended'
  where v.session_id = end_call.session_id and v.status in ('waiting_for_participants', 'active', 'failed');
$$;

create or replace function app_private.step_result(session_id uuid)
returns app_public.sessions
language sql
as $$
  select app_private.end_step();
  select s.* from app_public.sessions s where s.id = step_result.session_id;
$$;

-- Turns a check or not-null violation into INVALID_ARGUMENT. The rule stays
-- in the table's constraint; the constraint's comment is the message.
create or replace function app_private.raise_invalid_argument(schema_name text, table_name text, constraint_name text, column_name text)
returns void
language plpgsql
as $$
declare
  v_explanation text;
begin
  select obj_description(c.oid, 'pg_constraint') into v_explanation
  from pg_constraint c
  join pg_class t on t.oid = c.conrelid
  join pg_namespace n on n.oid = t.relnamespace
  where c.conname = raise_invalid_argument.constraint_name
    and t.relname = raise_invalid_argument.table_name
    and n.nspname = raise_invalid_argument.schema_name;
  perform app_private.raise_error(
    'INVALID_ARGUMENT',
    format('Invalid argument: %s',
           coalesce(v_explanation, nullif(raise_invalid_argument.column_name, '') || ' is required', raise_invalid_argument.constraint_name)),
    jsonb_build_object('constraint', nullif(raise_invalid_argument.constraint_name, ''),
                       'column', nullif(raise_invalid_argument.column_name, '')));
end;
$$;

-- 1. The client requests a session: session requested, payment pending, call
--    not started, and one pending form per required form key. The payer's
--    number is normalised (app_private.normalize_phone).
create or replace function app_public.request_session(
  client_id uuid,
  therapist_id uuid,
  scheduled_at timestamptz,
  duration_minutes integer,
  price_kes integer,
  payer_phone text,
  form_keys text[] default '{}'
)
returns app_public.sessions
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_session app_public.sessions;
  v_schema text;
  v_table text;
  v_constraint text;
  v_column text;
begin
  perform app_private.begin_step('request_session');
  v_session.client_id := request_session.client_id;
  v_session.therapist_id := request_session.therapist_id;
  perform app_private.authorize('request_session', v_session);
  if request_session.scheduled_at <= now() then
    perform app_private.raise_error(
      'INVALID_ARGUMENT',
      format('Invalid argument scheduled_at: %s. Allowed: a time in the future', request_session.scheduled_at),
      jsonb_build_object('argument', 'scheduled_at'));
  end if;
  begin
    insert into app_public.sessions (client_id, therapist_id, scheduled_at, duration_minutes, price_kes)
    values (request_session.client_id, request_session.therapist_id, request_session.scheduled_at,
            request_session.duration_minutes, request_session.price_kes)
    returning * into v_session;
    insert into app_public.payments (session_id, amount_kes, payer_phone)
    values (v_session.id, v_session.price_kes, app_private.normalize_phone(request_session.payer_phone));
    insert into app_public.video_calls (session_id) values (v_session.id);
    insert into app_public.session_forms (session_id, form_key)
    select distinct v_session.id, k from unnest(coalesce(request_session.form_keys, '{}')) k;
  exception when check_violation or not_null_violation then
    get stacked diagnostics v_schema = schema_name, v_table = table_name,
                            v_constraint = constraint_name, v_column = column_name;
    perform app_private.raise_invalid_argument(v_schema, v_table, v_constraint, v_column);
  end;
  return app_private.step_result(v_session.id);
end;
$$;
comment on function app_public.request_session(uuid, uuid, timestamptz, integer, integer, text, text[]) is
  E'@resultFieldName session\nRequests a session: the session is requested, its payment pending, its call not started, and its forms pending.';

-- 2. The therapist approves the request.
create or replace function app_public.approve_session(session_id uuid)
returns app_public.sessions
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform app_private.begin_step('approve_session');
  perform app_private.lock_session(approve_session.session_id, 'approve_session');
  perform app_private.set_session_status(approve_session.session_id, 'approved');
  return app_private.step_result(approve_session.session_id);
end;
$$;
comment on function app_public.approve_session(uuid) is E'@resultFieldName session\nApproves a requested session.';

-- 3. The client pays: payment initiated and session payment_pending together.
--    After a failure the same step is the retry (payment failed → initiated).
create or replace function app_public.initiate_payment(session_id uuid)
returns app_public.sessions
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_session app_public.sessions;
begin
  perform app_private.begin_step('initiate_payment');
  v_session := app_private.lock_session(initiate_payment.session_id, 'initiate_payment');
  perform app_private.set_payment_status(initiate_payment.session_id, 'initiated');
  -- On a retry the session is payment_pending already.
  if v_session.status <> 'payment_pending' then
    perform app_private.set_session_status(initiate_payment.session_id, 'payment_pending');
  end if;
  return app_private.step_result(initiate_payment.session_id);
end;
$$;
comment on function app_public.initiate_payment(uuid) is
  E'@resultFieldName session\nStarts a payment (or retries a failed one): payment initiated, session payment_pending.';

-- A payment's outcome, applied to the payment and its session (the caller
-- holds the session locked): confirmed → session paid, then forms_required
-- (forms open) or ready; failed → payment failed.
create or replace function app_private.apply_payment_outcome(session_id uuid, outcome text)
returns void
language plpgsql
as $$
begin
  perform app_private.set_payment_status(apply_payment_outcome.session_id, apply_payment_outcome.outcome);
  if apply_payment_outcome.outcome = 'confirmed' then
    perform app_private.set_session_status(apply_payment_outcome.session_id, 'paid');
    perform app_private.set_session_status(
      apply_payment_outcome.session_id,
      case when cardinality(app_hidden.open_forms(apply_payment_outcome.session_id)) > 0
           then 'forms_required' else 'ready' end);
  end if;
end;
$$;

-- 4. The provider's outcome: confirmed → session paid, then forms_required
--    (forms open) or ready; failed → payment failed, which raises the
--    ALERT_CLIENT_RETRY required action (app_hidden.payment_state_actions).
create or replace function app_public.record_payment_outcome(session_id uuid, outcome text)
returns app_public.sessions
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform app_private.begin_step('record_payment_outcome');
  if record_payment_outcome.outcome is null or record_payment_outcome.outcome not in ('confirmed', 'failed') then
    perform app_private.raise_error(
      'INVALID_ARGUMENT',
      format('Invalid argument outcome: %s. Allowed: [confirmed, failed]', coalesce(record_payment_outcome.outcome, 'null')),
      jsonb_build_object('argument', 'outcome', 'allowed', jsonb_build_array('confirmed', 'failed')));
  end if;
  perform app_private.lock_session(record_payment_outcome.session_id, 'record_payment_outcome');
  perform app_private.apply_payment_outcome(record_payment_outcome.session_id, record_payment_outcome.outcome);
  return app_private.step_result(record_payment_outcome.session_id);
end;
$$;
comment on function app_public.record_payment_outcome(uuid, text) is
  E'@resultFieldName session\nApplies the payment provider''s outcome (confirmed or failed) to the payment and the session.';

-- 5. A required form is completed; the last one makes a forms_required session ready.
create or replace function app_public.complete_form(form_id uuid)
returns app_public.sessions
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_session_id uuid;
  v_session app_public.sessions;
begin
  perform app_private.begin_step('complete_form');
  perform app_private.authorize('complete_form', null);
  select f.session_id into v_session_id from app_public.session_forms f where f.id = complete_form.form_id;
  if v_session_id is null then
    perform app_private.raise_error(
      'NOT_FOUND', format('Form not found: %s', complete_form.form_id),
      jsonb_build_object('entity', 'form', 'id', complete_form.form_id));
  end if;
  v_session := app_private.lock_session(v_session_id, 'complete_form');
  update app_public.session_forms f set status = 'completed' where f.id = complete_form.form_id;
  if v_session.status = 'forms_required' and cardinality(app_hidden.open_forms(v_session_id)) = 0 then
    perform app_private.set_session_status(v_session_id, 'ready');
  end if;
  return app_private.step_result(v_session_id);
end;
$$;
comment on function app_public.complete_form(uuid) is
  E'@resultFieldName session\nCompletes a required intake form; completing the last one makes the session ready.';

-- 6. A participant joins the call. Refused, with the code of
--    app_hidden.session_call_access, when the session's state does not allow
--    it (UNPAID_ACCESS, FORMS_INCOMPLETE, SESSION_CLOSED). The call waits for
--    participants (from not_started, or again after a failure).
create or replace function app_public.join_call(session_id uuid)
returns app_public.sessions
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_session app_public.sessions;
  v_access app_hidden.session_call_access;
begin
  perform app_private.begin_step('join_call');
  v_session := app_private.lock_session(join_call.session_id, 'join_call');
  select * into v_access from app_hidden.session_call_access a where a.session_state = v_session.status;
  if not coalesce(v_access.can_join_call, false) then
    perform app_private.raise_error(
      coalesce(v_access.refusal_code, 'SESSION_CLOSED'),
      format('FORBIDDEN: %s (session=%s)', coalesce(v_access.refusal_message, 'Cannot join video call'), v_session.status),
      jsonb_build_object('entity', 'session', 'id', v_session.id, 'session', v_session.status));
  end if;
  update app_public.video_calls v set status = 'waiting_for_participants'
  where v.session_id = join_call.session_id
    and exists (
      select 1 from app_hidden.transitions t
      where t.entity_type = 'video' and t.from_state = v.status and t.to_state = 'waiting_for_participants');
  -- The caller is in the call now (a DBA joins nobody).
  update app_public.video_calls v set participants = array_append(v.participants, app_private.current_api_role())
  where v.session_id = join_call.session_id
    and app_private.current_api_role() in ('client', 'therapist')
    and not app_private.current_api_role() = any (v.participants);
  return app_private.step_result(join_call.session_id);
end;
$$;
comment on function app_public.join_call(uuid) is
  E'@resultFieldName session\nJoins the session''s video call; refused before payment, with forms open, or when the session is over.';

-- 6b. A participant leaves the call. The call's state does not change (it
--     ends with the session; a dropped call is report_call_failure).
create or replace function app_public.leave_call(session_id uuid)
returns app_public.sessions
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_party text := app_private.current_api_role();
begin
  perform app_private.begin_step('leave_call');
  perform app_private.lock_session(leave_call.session_id, 'leave_call');
  update app_public.video_calls v set participants = array_remove(v.participants, v_party)
  where v.session_id = leave_call.session_id and v_party = any (v.participants);
  if not found then
    perform app_private.raise_error(
      'INVALID_ARGUMENT', format('Invalid argument session_id: the %s is not in this call', coalesce(v_party, 'caller')),
      jsonb_build_object('argument', 'session_id', 'party', v_party));
  end if;
  return app_private.step_result(leave_call.session_id);
end;
$$;
comment on function app_public.leave_call(uuid) is
  E'@resultFieldName session\nLeaves the session''s video call; the call''s state does not change.';

-- 7. The therapist starts the session: session in_progress, call active.
create or replace function app_public.start_session(session_id uuid)
returns app_public.sessions
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform app_private.begin_step('start_session');
  perform app_private.lock_session(start_session.session_id, 'start_session');
  perform app_private.set_session_status(start_session.session_id, 'in_progress');
  -- A call nobody has joined yet (or a failed one) goes through waiting_for_participants.
  update app_public.video_calls v set status = 'waiting_for_participants'
  where v.session_id = start_session.session_id and v.status in ('not_started', 'failed');
  perform app_private.set_video_status(start_session.session_id, 'active');
  return app_private.step_result(start_session.session_id);
end;
$$;
comment on function app_public.start_session(uuid) is E'@resultFieldName session\nStarts a ready session: session in_progress, call active.';

-- 8. The therapist completes the session: session completed, call ended.
create or replace function app_public.complete_session(session_id uuid)
returns app_public.sessions
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform app_private.begin_step('complete_session');
  perform app_private.lock_session(complete_session.session_id, 'complete_session');
  perform app_private.set_session_status(complete_session.session_id, 'completed');
  perform app_private.end_call(complete_session.session_id);
  return app_private.step_result(complete_session.session_id);
end;
$$;
comment on function app_public.complete_session(uuid) is E'@resultFieldName session\nCompletes a session in progress: session completed, call ended.';

-- 9. Cancel: the session is cancelled; money taken is refunded, a payment not
--    yet taken is cancelled; a call under way ends.
create or replace function app_public.cancel_session(session_id uuid, reason text default null)
returns app_public.sessions
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform app_private.begin_step('cancel_session', cancel_session.reason);
  perform app_private.lock_session(cancel_session.session_id, 'cancel_session');
  perform app_private.set_session_status(cancel_session.session_id, 'cancelled');
  update app_public.payments p
  set status = case when p.status = 'confirmed' then 'refunded' else 'cancelled' end
  where p.session_id = cancel_session.session_id and p.status in ('pending', 'initiated', 'failed', 'confirmed');
  perform app_private.end_call(cancel_session.session_id);
  return app_private.step_result(cancel_session.session_id);
end;
$$;
comment on function app_public.cancel_session(uuid, text) is
  E'@resultFieldName session\nCancels a session: a confirmed payment is refunded, any other open payment cancelled, a call under way ended.';

-- 10. No-show (D1): the client's keeps the payment; the therapist's refunds it.
create or replace function app_public.mark_no_show(session_id uuid, party text)
returns app_public.sessions
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform app_private.begin_step('mark_no_show');
  if mark_no_show.party is null or mark_no_show.party not in ('client', 'therapist') then
    perform app_private.raise_error(
      'INVALID_ARGUMENT',
      format('Invalid argument party: %s. Allowed: [client, therapist]', coalesce(mark_no_show.party, 'null')),
      jsonb_build_object('argument', 'party', 'allowed', jsonb_build_array('client', 'therapist')));
  end if;
  perform app_private.lock_session(mark_no_show.session_id, 'mark_no_show:' || mark_no_show.party);
  perform app_private.set_session_status(mark_no_show.session_id, 'no_show_' || mark_no_show.party);
  if mark_no_show.party = 'therapist' then
    perform app_private.set_payment_status(mark_no_show.session_id, 'refunded');
  end if;
  perform app_private.end_call(mark_no_show.session_id);
  return app_private.step_result(mark_no_show.session_id);
end;
$$;
comment on function app_public.mark_no_show(uuid, text) is
  E'@resultFieldName session\nMarks a ready session as a no-show of the client (payment kept) or of the therapist (payment refunded).';

-- 11. Refund a confirmed payment. A session whose state does not allow a
--     refunded payment (app_hidden.payment_session_sync) is cancelled with it.
create or replace function app_public.refund_payment(session_id uuid, reason text default null)
returns app_public.sessions
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_session app_public.sessions;
begin
  perform app_private.begin_step('refund_payment', refund_payment.reason);
  v_session := app_private.lock_session(refund_payment.session_id, 'refund_payment');
  perform app_private.set_payment_status(refund_payment.session_id, 'refunded');
  if not exists (
    select 1 from app_hidden.payment_session_sync r
    where r.payment_state = 'refunded' and r.session_state = v_session.status
  ) then
    perform app_private.set_session_status(refund_payment.session_id, 'cancelled');
    perform app_private.end_call(refund_payment.session_id);
  end if;
  return app_private.step_result(refund_payment.session_id);
end;
$$;
comment on function app_public.refund_payment(uuid, text) is
  E'@resultFieldName session\nRefunds a confirmed payment; a session still open is cancelled with it.';

-- 12. The video provider reports that the call failed (D2); joining again retries it.
create or replace function app_public.report_call_failure(session_id uuid)
returns app_public.sessions
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform app_private.begin_step('report_call_failure');
  perform app_private.lock_session(report_call_failure.session_id, 'report_call_failure');
  perform app_private.set_video_status(report_call_failure.session_id, 'failed');
  return app_private.step_result(report_call_failure.session_id);
end;
$$;
comment on function app_public.report_call_failure(uuid) is
  E'@resultFieldName session\nRecords that the session''s video call failed; joining again retries it.';
--! EndIncluded 40_flow_steps.sql
--! Included 43_payment_attempts.sql
-- M-Pesa payment attempts and their callbacks (tables: 19_payment_attempts.sql).
--
-- Every path that moves a payment keeps its attempts true, by trigger:
-- entering `initiated` opens an attempt and queues its STK push (a
-- graphile-worker job, in the same transaction: the push happens only if the
-- step commits); leaving `initiated` settles the open attempt. The provider's
-- answers (push response, callback, STK push query) settle attempts through
-- app_private.settle_attempt, which moves the payment and the session.

-- Opens the attempt of a payment that enters `initiated` and queues its push;
-- settles the open attempt of a payment that leaves it.
create or replace function app_private.tg_payments__attempts() returns trigger
language plpgsql
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
    perform graphile_worker.add_job('mpesa_stk_push', json_build_object('attemptId', v_attempt_id),
                                    max_attempts := 5, job_key := 'mpesa_stk_push:' || v_attempt_id);
  end if;
  return null;
end;
$$;
comment on function app_private.tg_payments__attempts() is
  'Opens a payment attempt (and queues its STK push) when a payment is initiated; settles it when the payment moves on.';
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
  insert into app_private.payment_callback_conflicts (checkout_request_id, outcome, fingerprint, body)
  values (entry.checkout_request_id, 'conflict', repeated_payment_callback.fingerprint, repeated_payment_callback.body);
  return app_private.to_callback_result(
    app_private.payment_callback_result('conflict', entry.attempt_id, (entry.result ->> 'sessionId')::uuid), false);
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
    insert into app_private.payment_callback_conflicts (checkout_request_id, outcome, fingerprint, body)
    values (receive_payment_callback.checkout_request_id, 'receipt_reused', v_fingerprint, receive_payment_callback.body);
    perform app_private.end_step();
    return app_private.to_callback_result(app_private.payment_callback_result('receipt_reused', v_attempt.id, v_attempt.session_id), false);
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
      insert into app_private.payment_callback_conflicts (checkout_request_id, outcome, fingerprint, body)
      values (receive_payment_callback.checkout_request_id, 'receipt_reused', v_fingerprint, receive_payment_callback.body);
      return app_private.to_callback_result(app_private.payment_callback_result('receipt_reused', v_attempt.id, v_attempt.session_id), false);
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

-- The sweep: queues a settling job for every open attempt older than
-- query_after (the job key keeps one per attempt); returns how many.
create or replace function app_private.queue_payment_settlements(query_after interval)
returns integer
language plpgsql
as $$
declare
  v_count integer;
begin
  select count(graphile_worker.add_job('mpesa_settle_attempt', json_build_object('attemptId', a.id),
                                       job_key := 'mpesa_settle_attempt:' || a.id, job_key_mode := 'preserve_run_at'))
  into v_count
  from app_public.payment_attempts a
  where a.settled_at is null and a.created_at < now() - queue_payment_settlements.query_after;
  return v_count;
end;
$$;
--! EndIncluded 43_payment_attempts.sql
--! Included 60_grants_and_rls.sql
-- Privileges. The API connects as flow_authenticator (which can do nothing
-- by itself: NOINHERIT) and runs each request as one of the API roles:
--   flow_anonymous         no token: may read nothing;
--   flow_client, flow_therapist, flow_admin
--                          read the sessions row-level security lets them
--                          see, and take the flow steps step_permissions
--                          allows (the steps write as the schema owner);
--   flow_payment_provider  records payment outcomes.
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
  to flow_anonymous, flow_client, flow_therapist, flow_admin, flow_payment_provider, flow_authenticator;

-- Tables: read-only (every write goes through a flow step). Anonymous
-- requests read nothing; the payment provider may query (its mutations
-- return the session) but row-level security shows it no row.
revoke all on all tables in schema app_public from public;
revoke all on all tables in schema app_public
  from flow_anonymous, flow_client, flow_therapist, flow_admin, flow_payment_provider, flow_authenticator;
grant select on
  app_public.sessions, app_public.payments, app_public.video_calls, app_public.session_forms,
  app_public.audit_entries, app_public.required_actions, app_public.payment_attempts,
  app_public.payment_states, app_public.session_states, app_public.video_call_states, app_public.form_states
  to flow_client, flow_therapist, flow_admin, flow_payment_provider;
-- The state lookup tables are the API's enums: it reads them when it starts.
grant select on
  app_public.payment_states, app_public.session_states, app_public.video_call_states, app_public.form_states
  to flow_authenticator;

-- Functions: nothing by default. Every flow step (and the payment callback)
-- may be called by every API role: the step itself says who may take it
-- (app_private.authorize), with a clear NOT_AUTHORIZED rather than a bare
-- "permission denied".
revoke all on all functions in schema app_public, app_hidden, app_private from public;
grant execute on function app_public.current_user_id() to flow_client, flow_therapist, flow_admin, flow_payment_provider;
do $$
declare
  v_fn regprocedure;
begin
  for v_fn in
    select p.oid::regprocedure
    from pg_proc p join pg_namespace n on n.oid = p.pronamespace and n.nspname = 'app_public'
    where p.prorettype in ('app_public.sessions'::regtype, 'app_public.payment_callback_result'::regtype)
  loop
    execute format('grant execute on function %s to flow_anonymous, flow_client, flow_therapist, flow_admin, flow_payment_provider', v_fn);
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
  to flow_client, flow_therapist, flow_admin, flow_payment_provider;
grant usage on schema app_private to flow_client, flow_therapist, flow_admin, flow_payment_provider;
--! EndIncluded 60_grants_and_rls.sql
