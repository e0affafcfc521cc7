-- Cross-state rules (payment ↔ session, session ↔ video call, session ↔
-- forms) must hold when a transaction commits (decision D5): the entities of
-- one flow step may change in any order inside it. flow_violations says,
-- from the rules tables, which rules a session breaks and why: the
-- commit-time check raises its first answer, and the DBA's integrity view
-- lists them all. (The status-change trigger asks the same tables through
-- their compiled functions, 15_compiled_rules.sql.)

-- The rules a session breaks when its entities are in the given states. The
-- forms rule reads the session's forms as they are.
create or replace function app_hidden.flow_violations(session_id uuid, session_state text, payment_state text, video_state text)
returns table (rule text, message text, detail jsonb)
language sql
stable
as $$
  select 'payment_missing',
         format('Flow incomplete: session %s has no payment', flow_violations.session_id),
         jsonb_build_object('session', flow_violations.session_state)
  where flow_violations.payment_state is null
  union all
  select 'video_missing',
         format('Flow incomplete: session %s has no video call', flow_violations.session_id),
         jsonb_build_object('session', flow_violations.session_state)
  where flow_violations.video_state is null
  union all
  select 'payment_session',
         format('Payment-Session sync violation: payment=%s, session=%s. Allowed: session in [%s] or payment in [%s]',
                flow_violations.payment_state, flow_violations.session_state,
                (select string_agg(r.session_state, ', ' order by st.position)
                 from app_hidden.payment_session_sync r join app_public.session_states st on st.name = r.session_state
                 where r.payment_state = flow_violations.payment_state),
                (select string_agg(r.payment_state, ', ' order by st.position)
                 from app_hidden.payment_session_sync r join app_public.payment_states st on st.name = r.payment_state
                 where r.session_state = flow_violations.session_state)),
         jsonb_build_object('payment', flow_violations.payment_state, 'session', flow_violations.session_state)
  where flow_violations.payment_state is not null and not exists (
    select 1 from app_hidden.payment_session_sync r
    where r.payment_state = flow_violations.payment_state and r.session_state = flow_violations.session_state)
  union all
  select 'session_video',
         format('Session-Video sync violation: session=%s, video=%s. Allowed: video in [%s] or session in [%s]',
                flow_violations.session_state, flow_violations.video_state,
                (select string_agg(r.video_state, ', ' order by st.position)
                 from app_hidden.session_video_sync r join app_public.video_call_states st on st.name = r.video_state
                 where r.session_state = flow_violations.session_state),
                (select string_agg(r.session_state, ', ' order by st.position)
                 from app_hidden.session_video_sync r join app_public.session_states st on st.name = r.session_state
                 where r.video_state = flow_violations.video_state)),
         jsonb_build_object('session', flow_violations.session_state, 'video', flow_violations.video_state)
  where flow_violations.video_state is not null and not exists (
    select 1 from app_hidden.session_video_sync r
    where r.session_state = flow_violations.session_state and r.video_state = flow_violations.video_state)
  union all
  select 'session_forms',
         format('Session-Forms sync violation: session=%s with incomplete forms [%s]',
                flow_violations.session_state, array_to_string(app_hidden.open_forms(flow_violations.session_id), ', ')),
         jsonb_build_object('session', flow_violations.session_state,
                            'incompleteForms', to_jsonb(app_hidden.open_forms(flow_violations.session_id)))
  where exists (
    select 1 from app_hidden.session_form_requirements r
    where r.session_state = flow_violations.session_state and r.forms_complete_required)
    and exists (
      select 1 from app_public.session_forms f
      where f.session_id = flow_violations.session_id and f.status <> 'completed');
$$;
comment on function app_hidden.flow_violations(uuid, text, text, text) is
  'The cross-state rules a session breaks when its session, payment and video call are in the given states.';

-- The rules a session breaks as it is now.
create or replace function app_hidden.session_violations(id uuid)
returns table (session_id uuid, rule text, message text, detail jsonb)
language sql
stable
as $$
  select s.id, v.rule, v.message, v.detail
  from app_public.sessions s
  left join app_public.payments p on p.session_id = s.id
  left join app_public.video_calls c on c.session_id = s.id
  cross join lateral app_hidden.flow_violations(s.id, s.status, p.status, c.status) v
  where s.id = session_violations.id;
$$;
comment on function app_hidden.session_violations(uuid) is
  'Every cross-state rule that the session''s current states break; none on a healthy database.';


-- For DBAs: every session whose current states break a rule, and every flow
-- row whose session is missing or whose status is no state of its machine.
-- Data loaded with triggers off (session_replication_role = replica), or a
-- rule changed after the fact, shows up here. Empty on a healthy database.
create or replace view app_hidden.integrity_violations as
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
