-- The shapes the API's rule queries answer in.
create type app_public.transition_check as (
  allowed boolean,
  code text,
  reason text,
  message text,
  allowed_states text[]
);
comment on type app_public.transition_check is
  'Whether a status change is allowed; if not, the error code, reason and message it is refused with, and the allowed next states.';

create type app_public.sync_check as (
  valid boolean,
  violations text[],
  required_actions text[]
);
comment on type app_public.sync_check is
  'Whether a payment, session and video call state may stand together, the rules they break, and the actions the payment state requires.';

create type app_public.call_access as (
  allowed boolean,
  code text,
  message text
);
comment on type app_public.call_access is
  'Whether the session''s video call may be joined now, and if not, the error code and message a join gets.';

create type app_public.available_step as (
  step text,
  to_state text
);
comment on type app_public.available_step is
  'A flow step the viewer may take on the session now (the mutation of the same name), and the state it moves to.';

-- Which state each flow step moves its entity to: with step_permissions, it
-- says what a viewer may do next.
create table app_hidden.flow_steps (
  step text primary key,
  entity_type text not null references app_hidden.entity_types,
  to_state text not null,
  note text not null
);
comment on table app_hidden.flow_steps is 'The entity and state each flow step moves to.';
insert into app_hidden.flow_steps (step, entity_type, to_state, note) values
  ('approve_session',        'session', 'approved',          'approve_session'),
  ('initiate_payment',       'payment', 'initiated',         'initiate_payment (also the retry after a failure)'),
  ('record_payment_outcome', 'payment', 'confirmed',         'record_payment_outcome (confirmed or failed)'),
  ('complete_form',          'form',    'completed',         'complete_form'),
  ('join_call',              'video',   'waiting_for_participants', 'join_call (also when the call already waits or runs)'),
  ('start_session',          'session', 'in_progress',       'start_session'),
  ('complete_session',       'session', 'completed',         'complete_session'),
  ('cancel_session',         'session', 'cancelled',         'cancel_session'),
  ('mark_no_show:client',    'session', 'no_show_client',    'mark_no_show(client)'),
  ('mark_no_show:therapist', 'session', 'no_show_therapist', 'mark_no_show(therapist)'),
  ('refund_payment',         'payment', 'refunded',          'refund_payment'),
  ('report_call_failure',    'video',   'failed',            'report_call_failure');
