-- Who may take each flow step, as data. The API's users act through one of
-- these database roles (the JWT's role claim picks it): flow_client,
-- flow_therapist, flow_admin, and flow_payment_provider for the payment
-- provider's callbacks. `scope` says whether the role may take the step on
-- any session, or only on its own (the client's, or the therapist's).
-- A DBA working as the schema owner, or as a superuser, is none of these
-- roles and is not limited by this table.
create table app_hidden.step_permissions (
  step text not null,
  role text not null check (role in ('client', 'therapist', 'admin', 'payment_provider')),
  scope text not null check (scope in ('own', 'any')),
  note text not null,
  primary key (step, role)
);
comment on table app_hidden.step_permissions is
  'Which API role may take each flow step, on its own sessions or on any.';

insert into app_hidden.step_permissions (step, role, scope, note) values
  ('request_session',           'client',           'own', 'A client books for themselves.'),
  ('request_session',           'admin',            'any', 'Admins may do the rest.'),
  ('approve_session',           'therapist',        'own', 'The therapist accepts a request made to them.'),
  ('approve_session',           'admin',            'any', 'Admins may do the rest.'),
  ('initiate_payment',          'client',           'own', 'The client pays.'),
  ('initiate_payment',          'admin',            'any', 'Admins may do the rest.'),
  ('record_payment_outcome',    'payment_provider', 'any', 'Only the payment provider confirms or fails a payment; never a client, therapist or admin.'),
  ('complete_form',             'client',           'own', 'The client fills in their forms.'),
  ('complete_form',             'admin',            'any', 'Admins may do the rest.'),
  ('join_call',                 'client',           'own', 'Both parties join their own call.'),
  ('join_call',                 'therapist',        'own', 'Both parties join their own call.'),
  ('start_session',             'therapist',        'own', 'The therapist starts the session.'),
  ('start_session',             'admin',            'any', 'Admins may do the rest.'),
  ('complete_session',          'therapist',        'own', 'The therapist completes the session.'),
  ('complete_session',          'admin',            'any', 'Admins may do the rest.'),
  ('cancel_session',            'client',           'own', 'A client cancels their own session.'),
  ('cancel_session',            'admin',            'any', 'Admins may do the rest.'),
  ('mark_no_show:client',       'therapist',        'own', 'The therapist marks a client who did not come.'),
  ('mark_no_show:client',       'admin',            'any', 'Admins may do the rest.'),
  ('mark_no_show:therapist',    'admin',            'any', 'A therapist''s no-show refunds the client: an admin decides it.'),
  ('refund_payment',            'admin',            'any', 'Admins refund.'),
  ('report_call_failure',       'client',           'own', 'Either party reports that their call failed.'),
  ('report_call_failure',       'therapist',        'own', 'Either party reports that their call failed.'),
  ('report_call_failure',       'admin',            'any', 'Admins may do the rest.');

insert into app_hidden.error_codes (code, sqlstate, meaning, example) values
  ('NOT_AUTHORIZED', 'QFNA1',
   'The caller''s role may not take this step (on this session).',
   'Not authorized: a client may not record_payment_outcome');
