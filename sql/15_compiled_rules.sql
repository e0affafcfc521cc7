-- The rules tables, compiled. Every status change asks the rules a handful of
-- yes/no questions (is from → to a transition? is this payment state allowed
-- with that session state? …). Asked as queries, each costs an executor
-- start-up: several times the cost of the UPDATE being checked. So each
-- question is also a small SQL function whose body holds the answer as a
-- constant, generated from the tables; PostgreSQL inlines it into the
-- trigger's expressions, where it costs well under a microsecond.
--
-- The tables stay the only place a rule is written: compile_rules()
-- regenerates every function from them, and a trigger on every rules table
-- runs it in the same transaction as any change to the rules. (A test checks
-- each function against its table for every combination of states.)

create or replace function app_private.compile_rules() returns void
language plpgsql
as $$
declare
  v_pairs text[];
  v_actions text;
begin
  -- is_initial_state(entity_type, state)
  select coalesce(array_agg(s.entity_type || ':' || s.name order by 1), '{}') into v_pairs
  from app_hidden.states s where s.is_initial;
  execute format($f$
    create or replace function app_private.is_initial_state(entity_type text, state text) returns boolean
    language sql immutable parallel safe
    return (entity_type || ':' || state) = any (%L::text[])$f$, v_pairs);

  -- is_transition(entity_type, from_state, to_state)
  select coalesce(array_agg(t.entity_type || ':' || t.from_state || '>' || t.to_state order by 1), '{}') into v_pairs
  from app_hidden.transitions t;
  execute format($f$
    create or replace function app_private.is_transition(entity_type text, from_state text, to_state text) returns boolean
    language sql immutable parallel safe
    return (entity_type || ':' || from_state || '>' || to_state) = any (%L::text[])$f$, v_pairs);

  -- payment_session_in_sync(payment_state, session_state)
  select coalesce(array_agg(r.payment_state || '>' || r.session_state order by 1), '{}') into v_pairs
  from app_hidden.payment_session_sync r;
  execute format($f$
    create or replace function app_private.payment_session_in_sync(payment_state text, session_state text) returns boolean
    language sql immutable parallel safe
    return (payment_state || '>' || session_state) = any (%L::text[])$f$, v_pairs);

  -- session_video_in_sync(session_state, video_state)
  select coalesce(array_agg(r.session_state || '>' || r.video_state order by 1), '{}') into v_pairs
  from app_hidden.session_video_sync r;
  execute format($f$
    create or replace function app_private.session_video_in_sync(session_state text, video_state text) returns boolean
    language sql immutable parallel safe
    return (session_state || '>' || video_state) = any (%L::text[])$f$, v_pairs);

  -- forms_complete_required(session_state)
  select coalesce(array_agg(r.session_state order by 1), '{}') into v_pairs
  from app_hidden.session_form_requirements r where r.forms_complete_required;
  execute format($f$
    create or replace function app_private.forms_complete_required(session_state text) returns boolean
    language sql immutable parallel safe
    return session_state = any (%L::text[])$f$, v_pairs);

  -- payment_actions(payment_state): the required actions a payment state raises, or null
  select string_agg(format('when %L then %L::text[]', a.payment_state, a.actions), ' ' order by a.payment_state)
    into v_actions
  from (select payment_state, array_agg(action order by action) as actions
        from app_hidden.payment_state_actions group by payment_state) a;
  execute format($f$
    create or replace function app_private.payment_actions(payment_state text) returns text[]
    language sql immutable parallel safe
    return %s$f$,
    case when v_actions is null then 'null::text[]' else format('case payment_state %s end', v_actions) end);
end;
$$;
comment on function app_private.compile_rules() is
  'Regenerates the compiled rule functions (is_transition, …) from the rules tables.';

create or replace function app_private.tg_rules__compile() returns trigger
language plpgsql
as $$
begin
  perform app_private.compile_rules();
  return null;
end;
$$;

do $$
declare
  v_table text;
begin
  foreach v_table in array array[
    'app_public.payment_states', 'app_public.session_states', 'app_public.video_call_states', 'app_public.form_states',
    'app_hidden.transitions', 'app_hidden.payment_session_sync', 'app_hidden.session_video_sync',
    'app_hidden.session_form_requirements', 'app_hidden.payment_state_actions'
  ] loop
    execute format(
      'create or replace trigger _900_compile_rules after insert or update or delete or truncate on %s
         for each statement execute function app_private.tg_rules__compile()', v_table);
  end loop;
end;
$$;

-- Compile the rules as they stand.
select app_private.compile_rules();
