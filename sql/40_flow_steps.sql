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
