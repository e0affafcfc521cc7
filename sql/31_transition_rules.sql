-- Single-entity rules: a new row starts in its machine's initial state, and
-- every status change is a row of app_hidden.transitions. A refused change
-- names the allowed alternatives. (The trigger that applies them on every
-- write is in 34_status_change_trigger.sql.)

-- Whether from → to is allowed for an entity, and if not, the error the
-- triggers raise for it. The triggers, the DBA's explain_entity and the API's
-- validation queries all answer from here.
create or replace function app_hidden.check_transition(entity_type text, from_state text, to_state text)
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
create or replace function app_hidden.open_forms(session_id uuid)
returns text[]
language sql
stable
as $$
  select coalesce(array_agg(f.form_key order by f.form_key), '{}')
  from app_public.session_forms f
  where f.session_id = open_forms.session_id and f.status <> 'completed';
$$;

-- Ids, and the session a row belongs to, never change: the rules and the
-- audit log are kept per session.
create or replace function app_private.tg__immutable_keys() returns trigger
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
create or replace function app_private.tg__refuse_delete() returns trigger
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
