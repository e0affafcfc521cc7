-- Who is in the call. The video call's state machine has no state for "one
-- party left" (the reference moves the call only as the session goes), so
-- joining and leaving are recorded here, beside the state: leaving changes
-- no state; the call ends with the session, and a dropped call is reported
-- as a failure (report_call_failure).
alter table app_public.video_calls
  add column participants text[] not null default '{}'
    constraint video_calls_participants_parties check (participants <@ array['client', 'therapist']);
comment on column app_public.video_calls.participants is 'The parties in the call now: client, therapist.';

insert into app_hidden.step_permissions (step, role, scope, note) values
  ('leave_call', 'client',    'own', 'Both parties leave their own call.'),
  ('leave_call', 'therapist', 'own', 'Both parties leave their own call.');
