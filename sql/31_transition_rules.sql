-- Single-entity rules, checked at once on every write by any writer: a new row
-- starts in its machine's initial state, and every status change is a row of
-- app_hidden.transitions. A refused change names the allowed alternatives.

-- Whether from → to is allowed for an entity, and if not, the error the
-- triggers raise for it. The triggers, the DBA's explain_entity and the API's
-- validation queries all answer from here.
create function app_hidden.check_transition(entity_type text, from_state text, to_state text)
returns table (allowed boolean, code text, reason text, message text, allowed_states text[])
language sql
stable
as $$
  select
    ok,
    case when ok then null when f.reason_code is not null then 'FORBIDDEN_TRANSITION' else 'INVALID_STATE_TRANSITION' end,
    case when ok then null else f.reason_code end,
    case
      when ok then null
      when f.reason_code is not null then
        format('FORBIDDEN TRANSITION: %1$s.%2$s → %1$s.%3$s. Reason: %4$s. Allowed: [%5$s]',
               check_transition.entity_type, check_transition.from_state, check_transition.to_state,
               f.reason_code, array_to_string(a.states, ', '))
      else
        format('Invalid %s transition: %s → %s. Allowed: [%s]',
               check_transition.entity_type, check_transition.from_state, check_transition.to_state,
               array_to_string(a.states, ', '))
    end,
    a.states
  from (
    select coalesce(array_agg(t.to_state order by t.position), '{}') as states
    from app_hidden.transitions t
    where t.entity_type = check_transition.entity_type and t.from_state = check_transition.from_state
  ) a
  cross join lateral (select check_transition.to_state = any (a.states) as ok) o
  left join app_hidden.forbidden_transitions f
    on f.entity_type = check_transition.entity_type
   and f.from_state = check_transition.from_state
   and f.to_state = check_transition.to_state;
$$;
comment on function app_hidden.check_transition(text, text, text) is
  'Whether an entity may change from one state to another; if not, the error code, reason and message.';

-- The open (incomplete) required forms of a session, by key.
create function app_hidden.open_forms(session_id uuid)
returns text[]
language sql
stable
as $$
  select coalesce(array_agg(f.form_key order by f.form_key), '{}')
  from app_public.session_forms f
  where f.session_id = open_forms.session_id and f.status <> 'completed';
$$;

-- The row trigger of every flow table (TG_ARGV[0] is the entity type). It
-- fires on every UPDATE that sets status, even to the same value: as in the
-- reference, paid → paid is no transition, and is refused like any other.
-- checks the initial state or the transition, refuses entering a state that
-- needs every form complete while one is open (D7), raises the payment's
-- required actions, and appends the audit entry. One trigger does all four
-- so that each status change costs one function call.
create function app_private.tg__status_change() returns trigger
language plpgsql
as $$
declare
  v_entity text := tg_argv[0];
  v_session_id uuid;
  v_check record;
  v_open_forms text[];
begin
  if tg_op = 'INSERT' then
    if not exists (
      select 1 from app_hidden.states s
      where s.entity_type = v_entity and s.name = new.status and s.is_initial
    ) then
      perform app_private.raise_error(
        'INVALID_INITIAL_STATE',
        format('Invalid %s initial state: %s. Allowed: [%s]', v_entity, new.status,
               (select string_agg(s.name, ', ') from app_hidden.states s where s.entity_type = v_entity and s.is_initial)),
        jsonb_build_object('entity', v_entity, 'id', new.id, 'to', new.status,
                           'allowed', (select jsonb_agg(s.name) from app_hidden.states s where s.entity_type = v_entity and s.is_initial)));
    end if;
  elsif not exists (
    select 1 from app_hidden.transitions t
    where t.entity_type = v_entity and t.from_state = old.status and t.to_state = new.status
  ) then
    select * into v_check from app_hidden.check_transition(v_entity, old.status, new.status);
    perform app_private.raise_error(
      v_check.code, v_check.message,
      jsonb_build_object('entity', v_entity, 'id', new.id, 'from', old.status, 'to', new.status,
                         'reason', v_check.reason, 'allowed', to_jsonb(v_check.allowed_states)));
  end if;

  if v_entity = 'session' then
    v_session_id := new.id;
    -- D7: a session enters ready (or later) only with every required form complete.
    if exists (
      select 1 from app_hidden.session_form_requirements r
      where r.session_state = new.status and r.forms_complete_required
    ) then
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
  else
    v_session_id := new.session_id;
  end if;

  if v_entity = 'payment' then
    insert into app_public.required_actions (session_id, action, entity_type, entity_id)
    select new.session_id, a.action, 'payment', new.id
    from app_hidden.payment_state_actions a
    where a.payment_state = new.status;
  end if;

  insert into app_public.audit_entries
    (entity_type, entity_id, session_id, old_value, new_value, step, reason, actor, request_id)
  values (
    v_entity, new.id, v_session_id,
    case when tg_op = 'UPDATE' then old.status end,
    new.status,
    nullif(current_setting('flow.step', true), ''),
    nullif(current_setting('flow.reason', true), ''),
    coalesce(nullif(current_setting('flow.actor', true), ''), session_user),
    nullif(current_setting('flow.request_id', true), '')
  );
  return new;
end;
$$;
comment on function app_private.tg__status_change() is
  'Checks a new row''s initial state or a status change against the rules, then audits it.';

-- Ids, and the session a row belongs to, never change: the rules and the
-- audit log are kept per session.
create function app_private.tg__immutable_keys() returns trigger
language plpgsql
as $$
begin
  perform app_private.raise_error(
    'IMMUTABLE_FIELD',
    format('Immutable field: %s.%s cannot change', tg_table_name,
           case when to_jsonb(new) ->> 'id' is distinct from to_jsonb(old) ->> 'id' then 'id' else 'session_id' end),
    jsonb_build_object('table', tg_table_name));
  return null;
end;
$$;

-- Flow rows are never deleted: a session is cancelled, and its history stays.
create function app_private.tg__refuse_delete() returns trigger
language plpgsql
as $$
begin
  perform app_private.raise_error(
    'DELETE_NOT_ALLOWED',
    format('Delete not allowed: %s rows are kept; cancel the session instead', tg_table_name),
    jsonb_build_object('table', tg_table_name, 'operation', tg_op));
  return null;
end;
$$;

-- The triggers of the four flow tables. Their names give their order.
create trigger _100_immutable_keys before update on app_public.sessions
  for each row when (old.id is distinct from new.id)
  execute function app_private.tg__immutable_keys();
create trigger _200_check_initial_status before insert on app_public.sessions
  for each row execute function app_private.tg__status_change('session');
create trigger _210_check_status_change before update of status on app_public.sessions
  for each row execute function app_private.tg__status_change('session');
create trigger _300_refuse_delete before delete on app_public.sessions
  for each row execute function app_private.tg__refuse_delete();
create trigger _310_refuse_truncate before truncate on app_public.sessions
  for each statement execute function app_private.tg__refuse_delete();

create trigger _100_immutable_keys before update on app_public.payments
  for each row when (old.id is distinct from new.id or old.session_id is distinct from new.session_id)
  execute function app_private.tg__immutable_keys();
create trigger _200_check_initial_status before insert on app_public.payments
  for each row execute function app_private.tg__status_change('payment');
create trigger _210_check_status_change before update of status on app_public.payments
  for each row execute function app_private.tg__status_change('payment');
create trigger _300_refuse_delete before delete on app_public.payments
  for each row execute function app_private.tg__refuse_delete();
create trigger _310_refuse_truncate before truncate on app_public.payments
  for each statement execute function app_private.tg__refuse_delete();

create trigger _100_immutable_keys before update on app_public.video_calls
  for each row when (old.id is distinct from new.id or old.session_id is distinct from new.session_id)
  execute function app_private.tg__immutable_keys();
create trigger _200_check_initial_status before insert on app_public.video_calls
  for each row execute function app_private.tg__status_change('video');
create trigger _210_check_status_change before update of status on app_public.video_calls
  for each row execute function app_private.tg__status_change('video');
create trigger _300_refuse_delete before delete on app_public.video_calls
  for each row execute function app_private.tg__refuse_delete();
create trigger _310_refuse_truncate before truncate on app_public.video_calls
  for each statement execute function app_private.tg__refuse_delete();

create trigger _100_immutable_keys before update on app_public.session_forms
  for each row when (old.id is distinct from new.id or old.session_id is distinct from new.session_id)
  execute function app_private.tg__immutable_keys();
create trigger _200_check_initial_status before insert on app_public.session_forms
  for each row execute function app_private.tg__status_change('form');
create trigger _210_check_status_change before update of status on app_public.session_forms
  for each row execute function app_private.tg__status_change('form');
create trigger _300_refuse_delete before delete on app_public.session_forms
  for each row execute function app_private.tg__refuse_delete();
create trigger _310_refuse_truncate before truncate on app_public.session_forms
  for each statement execute function app_private.tg__refuse_delete();
