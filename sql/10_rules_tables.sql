-- The rules of the three state machines of the reference
-- (../shared/reference/flow-integrity-state-machines.md), plus intake forms,
-- live here as rows. Triggers read them on every write; nothing else holds a
-- copy. Every row has a note; a row that comes from one of our decisions
-- (../shared/reference/decisions.md) names it.

-- The decisions taken where the reference contradicts itself or is silent.
create table app_hidden.decisions (
  code text primary key check (code ~ '^D[0-9]+$'),
  gap text not null,
  decision text not null
);
comment on table app_hidden.decisions is
  'Our decisions where the reference contradicts itself or is silent (decisions.md); rules rows name them.';

-- The entities that have a state machine.
create table app_hidden.entity_types (
  name text primary key,
  position smallint not null unique,
  state_table regclass not null,
  entity_table regclass not null,
  note text not null,
  decision text references app_hidden.decisions
);
comment on table app_hidden.entity_types is
  'The entities that carry a status: payment, session, video (call) and form (intake form).';

-- One lookup table of states per machine, in app_public: the status columns
-- take their values from them, and the API turns each into a GraphQL enum.
-- (The status columns hold no foreign key to them: an FK check would take a
-- KEY SHARE lock on the same few lookup rows in every concurrent transaction;
-- the transition triggers already admit only states named in these rules.)
create table app_public.payment_states (
  name text primary key check (name ~ '^[a-z_]+$'),
  description text not null,
  position smallint not null unique,
  is_initial boolean not null default false,
  is_terminal boolean not null default false,
  note text not null,
  decision text references app_hidden.decisions
);
create table app_public.session_states (like app_public.payment_states including all);
create table app_public.video_call_states (like app_public.payment_states including all);
create table app_public.form_states (like app_public.payment_states including all);
alter table app_public.session_states add foreign key (decision) references app_hidden.decisions;
alter table app_public.video_call_states add foreign key (decision) references app_hidden.decisions;
alter table app_public.form_states add foreign key (decision) references app_hidden.decisions;

-- Each machine has exactly one initial state.
create unique index payment_states_one_initial on app_public.payment_states (is_initial) where is_initial;
create unique index session_states_one_initial on app_public.session_states (is_initial) where is_initial;
create unique index video_call_states_one_initial on app_public.video_call_states (is_initial) where is_initial;
create unique index form_states_one_initial on app_public.form_states (is_initial) where is_initial;

comment on table app_public.payment_states is E'@enum\nThe states of a payment (M-Pesa).';
comment on table app_public.session_states is E'@enum\nThe states of a therapy session booking.';
comment on table app_public.video_call_states is E'@enum\nThe states of a session''s video call.';
comment on table app_public.form_states is E'@enum\nThe states of a required intake form.';

-- All states of all machines, for the rules that are written once for every machine.
create view app_hidden.states as
  select 'payment'::text as entity_type, name, position, is_initial, is_terminal, note, decision from app_public.payment_states
  union all
  select 'session', name, position, is_initial, is_terminal, note, decision from app_public.session_states
  union all
  select 'video', name, position, is_initial, is_terminal, note, decision from app_public.video_call_states
  union all
  select 'form', name, position, is_initial, is_terminal, note, decision from app_public.form_states;
comment on view app_hidden.states is 'Every state of every machine, with the machine''s name as entity_type.';

-- The allowed transitions of every machine. `position` orders a state's
-- allowed next states as the reference lists them (error messages use it).
create table app_hidden.transitions (
  entity_type text not null references app_hidden.entity_types,
  from_state text not null,
  to_state text not null,
  position smallint not null,
  note text not null,
  decision text references app_hidden.decisions,
  primary key (entity_type, from_state, to_state),
  unique (entity_type, from_state, position),
  check (from_state <> to_state)
);
comment on table app_hidden.transitions is
  'The allowed status changes of each machine; any other change is refused.';

-- The reason codes that name why a specific transition is refused.
create table app_hidden.reason_codes (
  code text primary key check (code ~ '^[A-Z_]+$'),
  meaning text not null
);
comment on table app_hidden.reason_codes is 'Why a forbidden transition is refused.';

-- Refused transitions that carry a specific reason code instead of the
-- generic INVALID_STATE_TRANSITION (decision D6).
create table app_hidden.forbidden_transitions (
  entity_type text not null references app_hidden.entity_types,
  from_state text not null,
  to_state text not null,
  reason_code text not null references app_hidden.reason_codes,
  note text not null,
  decision text references app_hidden.decisions,
  primary key (entity_type, from_state, to_state)
);
comment on table app_hidden.forbidden_transitions is
  'Transitions refused with a specific reason code (reference: FORBIDDEN_TRANSITIONS).';

-- Payment ↔ session: which session states each payment state allows.
create table app_hidden.payment_session_sync (
  payment_state text not null references app_public.payment_states,
  session_state text not null references app_public.session_states,
  note text not null,
  decision text references app_hidden.decisions,
  primary key (payment_state, session_state)
);
comment on table app_hidden.payment_session_sync is
  'The session states each payment state allows, checked when a transaction commits.';

-- What a payment state requires to be done (reference: requiredActions).
create table app_hidden.payment_state_actions (
  payment_state text not null references app_public.payment_states,
  action text not null check (action ~ '^[A-Z_]+$'),
  note text not null,
  decision text references app_hidden.decisions,
  primary key (payment_state, action)
);
comment on table app_hidden.payment_state_actions is
  'The actions raised (into app_public.required_actions) when a payment enters a state.';

-- Session ↔ video call: which video states each session state allows.
create table app_hidden.session_video_sync (
  session_state text not null references app_public.session_states,
  video_state text not null references app_public.video_call_states,
  note text not null,
  decision text references app_hidden.decisions,
  primary key (session_state, video_state)
);
comment on table app_hidden.session_video_sync is
  'The video call states each session state allows, checked when a transaction commits.';

-- Error codes: every error a user can cause, listed once (code, SQLSTATE,
-- meaning, example). Our SQLSTATEs are class QF: 5 characters, third not 0
-- or P, fourth a letter, not ending in 000, so they never collide with
-- PostgreSQL's own.
create table app_hidden.error_codes (
  code text primary key check (code ~ '^[A-Z_]+$'),
  sqlstate text not null unique
    check (sqlstate ~ '^[A-EG-OQ-WYZ][0-9A-Z][1-9A-OQ-Z][A-Z][0-9A-Z]$' and right(sqlstate, 3) <> '000'),
  meaning text not null,
  example text not null
);
comment on table app_hidden.error_codes is
  'Every error code a user can cause: its SQLSTATE, meaning and an example message.';

-- Who may join the call in each session state (reference: canJoinCall), and
-- the error code that refuses a join.
create table app_hidden.session_call_access (
  session_state text primary key references app_public.session_states,
  can_join_call boolean not null,
  refusal_code text references app_hidden.error_codes,
  refusal_message text,
  note text not null,
  decision text references app_hidden.decisions,
  check (can_join_call = (refusal_code is null) and (refusal_code is null) = (refusal_message is null))
);
comment on table app_hidden.session_call_access is
  'Whether the video call may be joined in each session state, and why not.';

-- Which session states need every required intake form complete (D7).
create table app_hidden.session_form_requirements (
  session_state text primary key references app_public.session_states,
  forms_complete_required boolean not null,
  note text not null,
  decision text references app_hidden.decisions
);
comment on table app_hidden.session_form_requirements is
  'Whether a session state needs every required intake form complete (decision D7).';

-- A rules row that names a state must name one of its machine's states.
-- (transitions and forbidden_transitions serve every machine, so a foreign
-- key cannot say it.)
create function app_private.tg_rules__check_states() returns trigger
language plpgsql as $$
begin
  if not exists (select 1 from app_hidden.states s where s.entity_type = new.entity_type and s.name = new.from_state)
     or not exists (select 1 from app_hidden.states s where s.entity_type = new.entity_type and s.name = new.to_state) then
    raise exception 'Rules row names an unknown % state: % → %', new.entity_type, new.from_state, new.to_state
      using errcode = 'integrity_constraint_violation';
  end if;
  if tg_table_name = 'forbidden_transitions' and exists (
    select 1 from app_hidden.transitions t
    where t.entity_type = new.entity_type and t.from_state = new.from_state and t.to_state = new.to_state
  ) then
    raise exception 'A forbidden transition cannot also be allowed: % % → %', new.entity_type, new.from_state, new.to_state
      using errcode = 'integrity_constraint_violation';
  end if;
  return new;
end;
$$;
create trigger _100_check_states before insert or update on app_hidden.transitions
  for each row execute function app_private.tg_rules__check_states();
create trigger _100_check_states before insert or update on app_hidden.forbidden_transitions
  for each row execute function app_private.tg_rules__check_states();
