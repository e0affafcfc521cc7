-- For DBAs in psql: what can this entity do next, and why not?
--   select * from app_hidden.explain_entity('session', '…');
-- One row per state of the entity's machine: whether the change is allowed on
-- its own (the transition table), the error it would raise if not, and, when
-- allowed, what the other entities of the session must do in the same
-- transaction for the commit-time rules to hold (the states they can reach
-- in one step that the rules allow with it).
create or replace function app_hidden.explain_entity(entity_type text, entity_id uuid)
returns table (
  entity text,
  id uuid,
  session_id uuid,
  current_state text,
  next_state text,
  allowed boolean,
  code text,
  reason text,
  message text,
  also_requires text
)
language plpgsql
stable
as $$
declare
  v_table regclass;
  v_state text;
  v_session_id uuid;
  v_session text;
  v_payment text;
  v_video text;
  v_open_forms text[];
begin
  select e.entity_table into v_table from app_hidden.entity_types e where e.name = explain_entity.entity_type;
  if v_table is null then
    perform app_private.raise_error(
      'INVALID_ARGUMENT',
      format('Invalid argument entity_type: %s. Allowed: [%s]', explain_entity.entity_type,
             (select string_agg(e.name, ', ' order by e.position) from app_hidden.entity_types e)),
      jsonb_build_object('argument', 'entity_type'));
  end if;
  execute format('select status, %s from %s where id = $1',
                 case when explain_entity.entity_type = 'session' then 'id' else 'session_id' end, v_table)
    into v_state, v_session_id using explain_entity.entity_id;
  if v_state is null then
    perform app_private.raise_error(
      'NOT_FOUND', format('%s not found: %s', initcap(explain_entity.entity_type), explain_entity.entity_id),
      jsonb_build_object('entity', explain_entity.entity_type, 'id', explain_entity.entity_id));
  end if;
  select s.status into v_session from app_public.sessions s where s.id = v_session_id;
  select p.status into v_payment from app_public.payments p where p.session_id = v_session_id;
  select v.status into v_video from app_public.video_calls v where v.session_id = v_session_id;
  v_open_forms := app_hidden.open_forms(v_session_id);

  return query
  select explain_entity.entity_type, explain_entity.entity_id, v_session_id, v_state, st.name,
         c.allowed and not forms_block, 
         case when forms_block then 'FORBIDDEN_TRANSITION' else c.code end,
         case when forms_block then 'FORMS_REQUIRED' else c.reason end,
         case when forms_block then
           format('FORBIDDEN TRANSITION: session.%s → session.%s. Reason: FORMS_REQUIRED. Incomplete forms: [%s]',
                  v_state, st.name, array_to_string(v_open_forms, ', '))
         else c.message end,
         case when c.allowed and not forms_block then nullif(concat_ws('; ', needs_payment, needs_session, needs_video), '') end
  from app_hidden.states st
  cross join lateral app_hidden.check_transition(explain_entity.entity_type, v_state, st.name) c
  cross join lateral (
    select
      c.allowed and explain_entity.entity_type = 'session' and cardinality(v_open_forms) > 0 and exists (
        select 1 from app_hidden.session_form_requirements r
        where r.session_state = st.name and r.forms_complete_required) as forms_block,
      case when explain_entity.entity_type = 'session' and not exists (
             select 1 from app_hidden.payment_session_sync r where r.payment_state = v_payment and r.session_state = st.name)
           then format('payment %s → one of [%s]', v_payment,
                       (select string_agg(r.payment_state, ', ') from app_hidden.payment_session_sync r
                        join app_hidden.transitions t on t.entity_type = 'payment' and t.from_state = v_payment and t.to_state = r.payment_state
                        where r.session_state = st.name))
      end as needs_payment,
      case when explain_entity.entity_type in ('payment', 'video') and not exists (
             select 1 from app_hidden.payment_session_sync r
             where explain_entity.entity_type = 'payment' and r.payment_state = st.name and r.session_state = v_session
             union all
             select 1 from app_hidden.session_video_sync r
             where explain_entity.entity_type = 'video' and r.video_state = st.name and r.session_state = v_session)
           then format('session %s → one of [%s]', v_session,
                       case when explain_entity.entity_type = 'payment'
                            then (select string_agg(r.session_state, ', ') from app_hidden.payment_session_sync r
                                  join app_hidden.transitions t on t.entity_type = 'session' and t.from_state = v_session and t.to_state = r.session_state
                                  where r.payment_state = st.name)
                            else (select string_agg(r.session_state, ', ') from app_hidden.session_video_sync r
                                  join app_hidden.transitions t on t.entity_type = 'session' and t.from_state = v_session and t.to_state = r.session_state
                                  where r.video_state = st.name) end)
      end as needs_session,
      case when explain_entity.entity_type = 'session' and not exists (
             select 1 from app_hidden.session_video_sync r where r.session_state = st.name and r.video_state = v_video)
           then format('video %s → one of [%s]', v_video,
                       (select string_agg(r.video_state, ', ') from app_hidden.session_video_sync r
                        join app_hidden.transitions t on t.entity_type = 'video' and t.from_state = v_video and t.to_state = r.video_state
                        where r.session_state = st.name))
      end as needs_video
  ) x
  where st.entity_type = explain_entity.entity_type and st.name <> v_state
  order by st.position;
end;
$$;
comment on function app_hidden.explain_entity(text, uuid) is
  'For each state an entity could move to: allowed or not, the error and reason if not, and what its session''s other entities must do with it.';
