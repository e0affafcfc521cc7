-- Cross-state rules (payment ↔ session, session ↔ video call, session ↔
-- forms) are checked when the transaction commits (decision D5), so the
-- entities of one flow step may change in any order inside it. They are
-- written once, in session_violations: the commit-time triggers raise its
-- first violation, and the DBA's integrity view lists them all.

create function app_hidden.session_violations(id uuid)
returns table (session_id uuid, rule text, message text, detail jsonb)
language sql
stable
as $$
  select f.id, c.rule, c.message, c.detail
  from (
    select s.id, s.status as session_state, p.status as payment_state, v.status as video_state
    from app_public.sessions s
    left join app_public.payments p on p.session_id = s.id
    left join app_public.video_calls v on v.session_id = s.id
    where s.id = session_violations.id
  ) f
  cross join lateral (
    select 'payment_missing',
           format('Flow incomplete: session %s has no payment', f.id),
           jsonb_build_object('session', f.session_state)
    where f.payment_state is null
    union all
    select 'video_missing',
           format('Flow incomplete: session %s has no video call', f.id),
           jsonb_build_object('session', f.session_state)
    where f.video_state is null
    union all
    select 'payment_session',
           format('Payment-Session sync violation: payment=%s, session=%s. Allowed: session in [%s] or payment in [%s]',
                  f.payment_state, f.session_state,
                  (select string_agg(r.session_state, ', ' order by st.position)
                   from app_hidden.payment_session_sync r join app_public.session_states st on st.name = r.session_state
                   where r.payment_state = f.payment_state),
                  (select string_agg(r.payment_state, ', ' order by st.position)
                   from app_hidden.payment_session_sync r join app_public.payment_states st on st.name = r.payment_state
                   where r.session_state = f.session_state)),
           jsonb_build_object('payment', f.payment_state, 'session', f.session_state)
    where f.payment_state is not null and not exists (
      select 1 from app_hidden.payment_session_sync r
      where r.payment_state = f.payment_state and r.session_state = f.session_state)
    union all
    select 'session_video',
           format('Session-Video sync violation: session=%s, video=%s. Allowed: video in [%s] or session in [%s]',
                  f.session_state, f.video_state,
                  (select string_agg(r.video_state, ', ' order by st.position)
                   from app_hidden.session_video_sync r join app_public.video_call_states st on st.name = r.video_state
                   where r.session_state = f.session_state),
                  (select string_agg(r.session_state, ', ' order by st.position)
                   from app_hidden.session_video_sync r join app_public.session_states st on st.name = r.session_state
                   where r.video_state = f.video_state)),
           jsonb_build_object('session', f.session_state, 'video', f.video_state)
    where f.video_state is not null and not exists (
      select 1 from app_hidden.session_video_sync r
      where r.session_state = f.session_state and r.video_state = f.video_state)
    union all
    select 'session_forms',
           format('Session-Forms sync violation: session=%s with incomplete forms [%s]',
                  f.session_state, array_to_string(app_hidden.open_forms(f.id), ', ')),
           jsonb_build_object('session', f.session_state, 'incompleteForms', to_jsonb(app_hidden.open_forms(f.id)))
    where exists (
      select 1 from app_hidden.session_form_requirements r
      where r.session_state = f.session_state and r.forms_complete_required)
      and exists (select 1 from app_public.session_forms sf where sf.session_id = f.id and sf.status <> 'completed')
  ) c (rule, message, detail);
$$;
comment on function app_hidden.session_violations(uuid) is
  'Every cross-state rule that the session''s current states break; none on a healthy database.';

-- The commit-time check of every flow table (TG_ARGV[0] is the entity type).
create function app_private.tg__check_flow_sync() returns trigger
language plpgsql
as $$
declare
  v_session_id uuid;
  v_violation record;
begin
  if tg_argv[0] = 'session' then
    v_session_id := new.id;
  else
    v_session_id := new.session_id;
  end if;
  for v_violation in select * from app_hidden.session_violations(v_session_id) limit 1 loop
    perform app_private.raise_error(
      'SYNC_VIOLATION', v_violation.message,
      jsonb_build_object('sessionId', v_session_id, 'rule', v_violation.rule) || v_violation.detail);
  end loop;
  return null;
end;
$$;

create constraint trigger _900_check_flow_sync after insert on app_public.sessions
  deferrable initially deferred for each row
  execute function app_private.tg__check_flow_sync('session');
create constraint trigger _910_check_flow_sync after update of status on app_public.sessions
  deferrable initially deferred for each row when (old.status is distinct from new.status)
  execute function app_private.tg__check_flow_sync('session');

create constraint trigger _900_check_flow_sync after insert on app_public.payments
  deferrable initially deferred for each row
  execute function app_private.tg__check_flow_sync('payment');
create constraint trigger _910_check_flow_sync after update of status on app_public.payments
  deferrable initially deferred for each row when (old.status is distinct from new.status)
  execute function app_private.tg__check_flow_sync('payment');

create constraint trigger _900_check_flow_sync after insert on app_public.video_calls
  deferrable initially deferred for each row
  execute function app_private.tg__check_flow_sync('video');
create constraint trigger _910_check_flow_sync after update of status on app_public.video_calls
  deferrable initially deferred for each row when (old.status is distinct from new.status)
  execute function app_private.tg__check_flow_sync('video');

create constraint trigger _900_check_flow_sync after insert on app_public.session_forms
  deferrable initially deferred for each row
  execute function app_private.tg__check_flow_sync('form');
create constraint trigger _910_check_flow_sync after update of status on app_public.session_forms
  deferrable initially deferred for each row when (old.status is distinct from new.status)
  execute function app_private.tg__check_flow_sync('form');

-- For DBAs: every session whose current states break a rule, and every flow
-- row whose session is missing or whose status is no state of its machine.
-- Data loaded with triggers off (session_replication_role = replica), or a
-- rule changed after the fact, shows up here. Empty on a healthy database.
create view app_hidden.integrity_violations as
  select v.session_id, v.rule, v.message, v.detail
  from app_public.sessions s
  cross join lateral app_hidden.session_violations(s.id) v
  union all
  select x.session_id, 'orphan_' || x.entity_type,
         format('%s %s belongs to a session that does not exist: %s', x.entity_type, x.id, x.session_id),
         jsonb_build_object('entity', x.entity_type, 'id', x.id)
  from (
    select 'payment' as entity_type, p.id, p.session_id from app_public.payments p
    union all select 'video', v.id, v.session_id from app_public.video_calls v
    union all select 'form', f.id, f.session_id from app_public.session_forms f
  ) x
  where not exists (select 1 from app_public.sessions s where s.id = x.session_id)
  union all
  select x.session_id, 'unknown_state',
         format('%s %s has status %s, which is no %s state', x.entity_type, x.id, x.status, x.entity_type),
         jsonb_build_object('entity', x.entity_type, 'id', x.id, 'status', x.status)
  from (
    select 'session' as entity_type, s.id, s.id as session_id, s.status from app_public.sessions s
    union all select 'payment', p.id, p.session_id, p.status from app_public.payments p
    union all select 'video', v.id, v.session_id, v.status from app_public.video_calls v
    union all select 'form', f.id, f.session_id, f.status from app_public.session_forms f
  ) x
  where not exists (select 1 from app_hidden.states st where st.entity_type = x.entity_type and st.name = x.status);
comment on view app_hidden.integrity_violations is
  'Every session (or flow row) whose current states break a rule. Empty on a healthy database.';
