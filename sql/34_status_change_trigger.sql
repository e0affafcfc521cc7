-- The trigger that applies every rule on every write, by any writer (flow
-- step, GraphQL, a DBA's UPDATE, as owner or superuser).
--
-- On each new row and each UPDATE that sets a status (even to the same value:
-- as in the reference, paid → paid is no transition), one BEFORE row trigger:
--   1. checks the initial state, or that old → new is a transition (at once,
--      D5), and refuses entering a state that needs every form complete
--      while one is open (FORMS_REQUIRED, D7);
--   2. raises the new state's required actions (payment_state_actions);
--   3. locks the session row (when the row is not the session itself), so
--      that two transactions changing one session's entities queue up, and
--      judges whether the session's states (session, payment, call), with
--      this change, stand in both cross-state tables; when they do not, it
--      queues the commit-time check;
--   4. appends the audit entry, and notifies the change feed's readers.
-- It asks the rules through their compiled functions (15_compiled_rules.sql),
-- and runs one query: a status change is the hot path
-- (bench/status-changes.ts). (OLD is null for an INSERT, so old_value too.)
--
-- Why the commit-time check need not run for every change: after the last
-- change a transaction makes to a session's entities, the session is in the
-- state that change was judged in. If that state breaks a rule, that change
-- queued the check, which runs at commit. Intermediate states may break rules
-- (D5); the check they queue passes once the step's other entities have
-- moved. And when the transaction's last change left a session in sync, the
-- checks queued earlier for it have nothing left to find, and are skipped.
-- Forms: a session in a state that needs its forms complete has none open
-- (it could not have entered it otherwise); a form row cannot judge the form
-- it adds, so it always queues the check and turns the skipping off.

create or replace function app_private.tg__status_change() returns trigger
language plpgsql
as $$
declare
  v_entity text := tg_argv[0];
  v_session_id uuid;
  v_check record;
  v_open_forms text[];
  v_actions text[];
  v_session_state text;
  v_payment_state text;
  v_video_state text;
  v_in_sync boolean;
begin
  -- 1. The machine's own rules.
  if tg_op = 'INSERT' then
    if not app_private.is_initial_state(v_entity, new.status) then
      perform app_private.raise_error(
        'INVALID_INITIAL_STATE',
        format('Invalid %s initial state: %s. Allowed: [%s]', v_entity, new.status,
               (select string_agg(s.name, ', ') from app_hidden.states s where s.entity_type = v_entity and s.is_initial)),
        jsonb_build_object('entity', v_entity, 'id', new.id, 'to', new.status,
                           'allowed', (select jsonb_agg(s.name) from app_hidden.states s where s.entity_type = v_entity and s.is_initial)));
    end if;
  else
    if not app_private.is_transition(v_entity, old.status, new.status) then
      select * into v_check from app_hidden.check_transition(v_entity, old.status, new.status);
      perform app_private.raise_error(
        v_check.code, v_check.message,
        jsonb_build_object('entity', v_entity, 'id', new.id, 'from', old.status, 'to', new.status,
                           'reason', v_check.reason, 'allowed', to_jsonb(v_check.allowed_states)));
    end if;
    -- D7: a session enters ready only with every required form complete.
    if v_entity = 'session'
       and app_private.forms_complete_required(new.status)
       and not app_private.forms_complete_required(old.status) then
      v_open_forms := app_hidden.open_forms(new.id);
      if cardinality(v_open_forms) > 0 then
        perform app_private.raise_error(
          'FORBIDDEN_TRANSITION',
          format('FORBIDDEN TRANSITION: session.%s → session.%s. Reason: FORMS_REQUIRED. Incomplete forms: [%s]',
                 old.status, new.status, array_to_string(v_open_forms, ', ')),
          jsonb_build_object('entity', 'session', 'id', new.id, 'from', old.status, 'to', new.status,
                             'reason', 'FORMS_REQUIRED', 'incompleteForms', to_jsonb(v_open_forms)));
      end if;
    end if;
  end if;

  -- 3 and 4, in one statement: append the audit entry, and read the
  -- session's states, with this row's new one, locking the session row (a
  -- no-op when this row is the session: its UPDATE holds the lock already;
  -- a new session is not there yet, and is out of sync until its payment and
  -- call are).
  if v_entity = 'session' then
    v_session_id := new.id;
  else
    v_session_id := new.session_id;
  end if;
  with audit as (
    insert into app_public.audit_entries
      (entity_type, entity_id, session_id, old_value, new_value, step, reason, actor, request_id)
    values (v_entity, new.id, v_session_id, old.status, new.status,
            nullif(current_setting('flow.step', true), ''), nullif(current_setting('flow.reason', true), ''),
            coalesce(nullif(current_setting('flow.actor', true), ''), session_user),
            nullif(current_setting('flow.request_id', true), ''))
  )
  select case when v_entity = 'session' then new.status else s.status end,
         case when v_entity = 'payment' then new.status else p.status end,
         case when v_entity = 'video' then new.status else c.status end
    into v_session_state, v_payment_state, v_video_state
  from app_public.sessions s
  left join app_public.payments p on p.session_id = s.id
  left join app_public.video_calls c on c.session_id = s.id
  where s.id = v_session_id
  for no key update of s;
  -- 2. Required actions (only payment states have any), after the change's
  -- own audit entry, which they follow in the change feed.
  if v_entity = 'payment' then
    v_actions := app_private.payment_actions(new.status);
    if v_actions is not null then
      insert into app_public.required_actions (session_id, action, entity_type, entity_id)
      select new.session_id, a, v_entity, new.id from unnest(v_actions) a;
    end if;
  end if;

  -- Wakes the change feed's live readers (subscriptions, webhooks): the
  -- session's id only; they read the change back under their own rights.
  -- (Delivered at commit, once per session and transaction.)
  perform pg_notify('flow_changes', v_session_id::text);
  -- A form row cannot judge the form it adds: it always queues the check,
  -- and the check then runs whatever comes later in the transaction.
  if v_entity = 'form' then
    perform set_config('flow.forms_changed', 'on', true);
  end if;
  v_in_sync := v_entity <> 'form'
    and app_private.payment_session_in_sync(v_payment_state, v_session_state)
    and app_private.session_video_in_sync(v_session_state, v_video_state);
  -- The judgement, for the commit-time trigger: its WHEN queues the check
  -- when this change leaves the session out of sync ('!'); at commit, the
  -- check is skipped when the last change of the transaction left this very
  -- session in sync. (A transaction-local setting: a rolled-back savepoint
  -- restores it along with the change it judged.)
  perform set_config('flow.sync', case when v_in_sync then v_session_id::text else '!' end, true);
  return new;
end;
$$;
comment on function app_private.tg__status_change() is
  'Applies the rules to a new row or a status change, queues the commit-time check when needed, and audits it.';

-- The commit-time check (TG_ARGV[0] is the entity type): the session as it is
-- when the transaction commits must break no rule; else the first one
-- flow_violations names is raised. Skipped when the transaction's last change
-- left this session in sync (see above); the compiled rules answer the usual
-- case.
create or replace function app_private.tg__check_flow_sync() returns trigger
language plpgsql
as $$
declare
  v_session_id uuid;
  v_flow record;
  v_violation record;
begin
  if tg_argv[0] = 'session' then
    v_session_id := new.id;
  else
    v_session_id := new.session_id;
  end if;
  if current_setting('flow.sync', true) = v_session_id::text
     and current_setting('flow.forms_changed', true) is distinct from 'on' then
    return null;
  end if;
  select s.status as session_state, p.status as payment_state, c.status as video_state into v_flow
  from app_public.sessions s
  left join app_public.payments p on p.session_id = s.id
  left join app_public.video_calls c on c.session_id = s.id
  where s.id = v_session_id;
  if not found
     or (app_private.payment_session_in_sync(v_flow.payment_state, v_flow.session_state)
         and app_private.session_video_in_sync(v_flow.session_state, v_flow.video_state)
         and not (app_private.forms_complete_required(v_flow.session_state)
                  and cardinality(app_hidden.open_forms(v_session_id)) > 0)) then
    return null;
  end if;
  for v_violation in select * from app_hidden.session_violations(v_session_id) limit 1 loop
    perform app_private.raise_error(
      'SYNC_VIOLATION', v_violation.message,
      jsonb_build_object('sessionId', v_session_id, 'rule', v_violation.rule) || v_violation.detail);
  end loop;
  return null;
end;
$$;

-- The triggers of the four flow tables, the same on each. Their names give
-- their order:
--   _100_immutable_keys        before update of id (, session_id)  tg__immutable_keys
--   _200_check_initial_status  before insert                       tg__status_change(entity)
--   _210_check_status_change   before update of status             tg__status_change(entity)
--   _300_refuse_delete         before delete                       tg__refuse_delete
--   _310_refuse_truncate       before truncate (statement)         tg__refuse_delete
--   _900_check_flow_sync       after insert or update of status, deferred to commit,
--                              when the change left the session out of sync
do $$
declare
  v_table text;
  v_entity text;
  v_keys text;
begin
  for v_table, v_entity in values
    ('app_public.sessions', 'session'), ('app_public.payments', 'payment'),
    ('app_public.video_calls', 'video'), ('app_public.session_forms', 'form')
  loop
    v_keys := case when v_entity = 'session' then 'id' else 'id, session_id' end;
    execute format(
      'create or replace trigger _100_immutable_keys before update of %2$s on %1$s
         for each row when (%3$s) execute function app_private.tg__immutable_keys()',
      v_table, v_keys,
      case when v_entity = 'session' then 'old.id is distinct from new.id'
           else 'old.id is distinct from new.id or old.session_id is distinct from new.session_id' end);
    execute format(
      'create or replace trigger _200_check_initial_status before insert on %s
         for each row execute function app_private.tg__status_change(%L)', v_table, v_entity);
    execute format(
      'create or replace trigger _210_check_status_change before update of status on %s
         for each row execute function app_private.tg__status_change(%L)', v_table, v_entity);
    execute format(
      'create or replace trigger _300_refuse_delete before delete on %s
         for each row execute function app_private.tg__refuse_delete()', v_table);
    execute format(
      'create or replace trigger _310_refuse_truncate before truncate on %s
         for each statement execute function app_private.tg__refuse_delete()', v_table);
    -- (CREATE OR REPLACE does not cover constraint triggers.)
    execute format('drop trigger if exists _900_check_flow_sync on %s', v_table);
    execute format(
      'create constraint trigger _900_check_flow_sync after insert or update of status on %s
         deferrable initially deferred for each row
         when (current_setting(''flow.sync'', true) = ''!'')
         execute function app_private.tg__check_flow_sync(%L)', v_table, v_entity);
  end loop;
end;
$$;
