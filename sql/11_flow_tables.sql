-- The flow of one session: the session, its payment, its video call and its
-- required intake forms. Every row carries session_id (the session's own id
-- for sessions), so one session's whole flow can later live on one shard.
-- Statuses start at their machine's initial state; only the rules change them.

create table app_public.sessions (
  id uuid primary key default gen_random_uuid(),
  client_id uuid not null,
  therapist_id uuid not null,
  scheduled_at timestamptz not null,
  duration_minutes integer not null
    constraint sessions_duration_minutes_range check (duration_minutes between 15 and 240),
  price_kes integer not null
    constraint sessions_price_kes_positive check (price_kes > 0),
  status text not null default 'requested',
  created_at timestamptz not null default now(),
  constraint sessions_client_is_not_therapist check (client_id <> therapist_id)
);
create index sessions_client_id_idx on app_public.sessions (client_id);
create index sessions_therapist_id_idx on app_public.sessions (therapist_id, scheduled_at);
comment on table app_public.sessions is
  E'@foreignKey (status) references app_public.session_states (name)\nA therapy session booked by a client with a therapist.';
comment on constraint sessions_duration_minutes_range on app_public.sessions is
  'duration_minutes must be between 15 and 240';
comment on constraint sessions_price_kes_positive on app_public.sessions is
  'price_kes must be a positive whole number of shillings';
comment on constraint sessions_client_is_not_therapist on app_public.sessions is
  'the client and the therapist must be different people';
comment on column app_public.sessions.status is 'Where the session is in its state machine (app_public.session_states).';
comment on column app_public.sessions.price_kes is 'The price in whole Kenyan shillings.';

create table app_public.payments (
  id uuid primary key default gen_random_uuid(),
  session_id uuid not null unique references app_public.sessions,
  amount_kes integer not null
    constraint payments_amount_kes_positive check (amount_kes > 0),
  currency text not null default 'KES'
    constraint payments_currency_kes check (currency = 'KES'),
  payer_phone text not null
    constraint payments_payer_phone_format check (payer_phone ~ '^254[17][0-9]{8}$'),
  status text not null default 'pending',
  created_at timestamptz not null default now()
);
comment on table app_public.payments is
  E'@foreignKey (status) references app_public.payment_states (name)\nThe one M-Pesa payment of a session.';
comment on constraint payments_payer_phone_format on app_public.payments is
  'payer_phone must be a Kenyan mobile number written 2547XXXXXXXX or 2541XXXXXXXX';
comment on column app_public.payments.payer_phone is 'The M-Pesa number that pays, as 2547XXXXXXXX or 2541XXXXXXXX.';

create table app_public.video_calls (
  id uuid primary key default gen_random_uuid(),
  session_id uuid not null unique references app_public.sessions,
  status text not null default 'not_started',
  created_at timestamptz not null default now()
);
comment on table app_public.video_calls is
  E'@foreignKey (status) references app_public.video_call_states (name)\nThe one video call of a session.';

create table app_public.session_forms (
  id uuid primary key default gen_random_uuid(),
  session_id uuid not null references app_public.sessions,
  form_key text not null
    constraint session_forms_form_key_format check (form_key ~ '^[a-z][a-z0-9_]{0,62}$'),
  status text not null default 'pending',
  created_at timestamptz not null default now(),
  unique (session_id, form_key)
);
comment on table app_public.session_forms is
  E'@foreignKey (status) references app_public.form_states (name)\nA required intake form of a session (decision D7).';
comment on constraint session_forms_form_key_format on app_public.session_forms is
  'form_key must be lowercase letters, digits and underscores, starting with a letter';
comment on column app_public.session_forms.form_key is 'Which form, e.g. intake or consent; unique within a session.';

-- The required actions the rules raise (app_hidden.payment_state_actions):
-- an outbox that integrations work through.
create table app_public.required_actions (
  id bigint generated always as identity primary key,
  session_id uuid not null references app_public.sessions,
  action text not null,
  entity_type text not null,
  entity_id uuid not null,
  created_at timestamptz not null default now()
);
create index required_actions_session_id_idx on app_public.required_actions (session_id);
comment on table app_public.required_actions is
  'Actions the rules require after a status change, e.g. ALERT_CLIENT_RETRY when a payment fails.';
