-- The rows of the rules: the reference's tables exactly, plus decisions D1–D7.

insert into app_hidden.decisions (code, gap, decision) values
  ('D1', 'no_show_client is unreachable: no payment state allows it.',
         'Payment confirmed also allows session no_show_client (the client did not come; the payment is kept).'),
  ('D2', 'A video call cannot fail while the session is ready or in_progress, so the failed → waiting_for_participants retry is unusable.',
         'Session ready and in_progress also allow video failed.'),
  ('D3', 'A session whose call failed cannot be completed, cancelled or marked no-show without a fake retry.',
         'Video failed → ended is allowed (the call is abandoned).'),
  ('D4', 'The session-video matrix is silent for requested, approved, payment_pending, paid, forms_required, no_show_client, no_show_therapist.',
         'Before ready the video must be not_started; a no-show session allows not_started or ended; can_join_call is false in all of them.'),
  ('D5', 'The canonical flow moves two entities one after the other, which breaks a cross-state rule between the two statements.',
         'Cross-state rules are checked when the transaction commits (deferred constraint triggers); single-entity transitions are checked at once.'),
  ('D6', 'The forbidden-transition list names transitions that the transition tables already reject.',
         'It is kept as data: it gives those rejections their specific reason code instead of the generic one.'),
  ('D7', 'paid → ready is allowed "if no forms needed", but nothing defines forms.',
         'A session has zero or more required intake forms; it may enter ready only when all are complete, and a video join is refused with FORMS_INCOMPLETE while any is not.');

insert into app_hidden.entity_types (name, position, state_table, entity_table, note, decision) values
  ('payment', 1, 'app_public.payment_states', 'app_public.payments', 'Reference: PAYMENT_STATE MACHINE.', null),
  ('session', 2, 'app_public.session_states', 'app_public.sessions', 'Reference: SESSION STATE MACHINE.', null),
  ('video', 3, 'app_public.video_call_states', 'app_public.video_calls', 'Reference: VIDEO CALL STATE MACHINE.', null),
  ('form', 4, 'app_public.form_states', 'app_public.session_forms', 'Required intake forms: pending until completed.', 'D7');

insert into app_public.payment_states (name, position, is_initial, is_terminal, description, note) values
  ('pending',   1, true,  false, 'Created with the session; nothing asked of the payer yet.', 'Reference: PAYMENT_STATES.PENDING.'),
  ('initiated', 2, false, false, 'The payer has been asked to pay (M-Pesa STK push).', 'Reference: PAYMENT_STATES.INITIATED.'),
  ('confirmed', 3, false, false, 'The provider confirmed the payment.', 'Reference: PAYMENT_STATES.CONFIRMED.'),
  ('failed',    4, false, false, 'The provider reported a failure; the client may retry.', 'Reference: PAYMENT_STATES.FAILED.'),
  ('refunded',  5, false, true,  'The money was returned to the payer.', 'Reference: PAYMENT_STATES.REFUNDED (terminal).'),
  ('cancelled', 6, false, true,  'Abandoned before any money was taken.', 'Reference: PAYMENT_STATES.CANCELLED (terminal).');

insert into app_public.session_states (name, position, is_initial, is_terminal, description, note) values
  ('requested',         1,  true,  false, 'The client asked for a session.', 'Reference: SESSION_STATES.REQUESTED.'),
  ('approved',          2,  false, false, 'The therapist accepted the request.', 'Reference: SESSION_STATES.APPROVED.'),
  ('payment_pending',   3,  false, false, 'A payment is under way.', 'Reference: SESSION_STATES.PAYMENT_PENDING.'),
  ('paid',              4,  false, false, 'The payment is confirmed.', 'Reference: SESSION_STATES.PAID.'),
  ('forms_required',    5,  false, false, 'Paid; waiting for required intake forms.', 'Reference: SESSION_STATES.FORMS_REQUIRED.'),
  ('ready',             6,  false, false, 'Paid and every form complete: the call may be joined.', 'Reference: SESSION_STATES.READY.'),
  ('in_progress',       7,  false, false, 'The session is taking place.', 'Reference: SESSION_STATES.IN_PROGRESS.'),
  ('completed',         8,  false, true,  'The session took place.', 'Reference: SESSION_STATES.COMPLETED (terminal).'),
  ('cancelled',         9,  false, true,  'The session was cancelled.', 'Reference: SESSION_STATES.CANCELLED (terminal).'),
  ('no_show_client',    10, false, true,  'The client did not come.', 'Reference: SESSION_STATES.NO_SHOW_CLIENT (terminal).'),
  ('no_show_therapist', 11, false, true,  'The therapist did not come.', 'Reference: SESSION_STATES.NO_SHOW_THERAPIST (terminal).');

insert into app_public.video_call_states (name, position, is_initial, is_terminal, description, note) values
  ('not_started',              1, true,  false, 'Nobody has joined yet.', 'Reference: VIDEO_STATES.NOT_STARTED.'),
  ('waiting_for_participants', 2, false, false, 'Someone joined; waiting for the other party.', 'Reference: VIDEO_STATES.WAITING_FOR_PARTICIPANTS.'),
  ('active',                   3, false, false, 'The call is live.', 'Reference: VIDEO_STATES.ACTIVE.'),
  ('ended',                    4, false, true,  'The call is over.', 'Reference: VIDEO_STATES.ENDED (terminal).'),
  ('failed',                   5, false, false, 'The call failed; it may be retried or abandoned.', 'Reference: VIDEO_STATES.FAILED.');

insert into app_public.form_states (name, position, is_initial, is_terminal, description, note, decision) values
  ('pending',   1, true,  false, 'Not filled in yet.', 'A required form starts incomplete.', 'D7'),
  ('completed', 2, false, true,  'Filled in.', 'Completion is final: a completed form never becomes incomplete again.', 'D7');

insert into app_hidden.transitions (entity_type, from_state, to_state, position, note, decision) values
  ('payment', 'pending',   'initiated', 1, 'Reference: PAYMENT_TRANSITIONS.', null),
  ('payment', 'pending',   'cancelled', 2, 'Reference: PAYMENT_TRANSITIONS.', null),
  ('payment', 'initiated', 'confirmed', 1, 'Reference: PAYMENT_TRANSITIONS.', null),
  ('payment', 'initiated', 'failed',    2, 'Reference: PAYMENT_TRANSITIONS.', null),
  ('payment', 'initiated', 'cancelled', 3, 'Reference: PAYMENT_TRANSITIONS.', null),
  ('payment', 'confirmed', 'refunded',  1, 'Reference: PAYMENT_TRANSITIONS.', null),
  ('payment', 'failed',    'initiated', 1, 'Reference: PAYMENT_TRANSITIONS (retry).', null),
  ('payment', 'failed',    'cancelled', 2, 'Reference: PAYMENT_TRANSITIONS.', null),

  ('session', 'requested',       'approved',          1, 'Reference: SESSION_TRANSITIONS.', null),
  ('session', 'requested',       'cancelled',         2, 'Reference: SESSION_TRANSITIONS.', null),
  ('session', 'approved',        'payment_pending',   1, 'Reference: SESSION_TRANSITIONS.', null),
  ('session', 'approved',        'cancelled',         2, 'Reference: SESSION_TRANSITIONS.', null),
  ('session', 'payment_pending', 'paid',              1, 'Reference: SESSION_TRANSITIONS.', null),
  ('session', 'payment_pending', 'cancelled',         2, 'Reference: SESSION_TRANSITIONS.', null),
  ('session', 'paid',            'forms_required',    1, 'Reference: SESSION_TRANSITIONS.', null),
  ('session', 'paid',            'ready',             2, 'Reference: SESSION_TRANSITIONS (if no forms needed; D7).', null),
  ('session', 'paid',            'cancelled',         3, 'Reference: SESSION_TRANSITIONS.', null),
  ('session', 'forms_required',  'ready',             1, 'Reference: SESSION_TRANSITIONS.', null),
  ('session', 'forms_required',  'cancelled',         2, 'Reference: SESSION_TRANSITIONS.', null),
  ('session', 'ready',           'in_progress',       1, 'Reference: SESSION_TRANSITIONS.', null),
  ('session', 'ready',           'no_show_client',    2, 'Reference: SESSION_TRANSITIONS.', null),
  ('session', 'ready',           'no_show_therapist', 3, 'Reference: SESSION_TRANSITIONS.', null),
  ('session', 'ready',           'cancelled',         4, 'Reference: SESSION_TRANSITIONS.', null),
  ('session', 'in_progress',     'completed',         1, 'Reference: SESSION_TRANSITIONS.', null),
  ('session', 'in_progress',     'cancelled',         2, 'Reference: SESSION_TRANSITIONS (mid-session cancellation).', null),

  ('video', 'not_started',              'waiting_for_participants', 1, 'Reference: VIDEO_TRANSITIONS.', null),
  ('video', 'waiting_for_participants', 'active',                   1, 'Reference: VIDEO_TRANSITIONS.', null),
  ('video', 'waiting_for_participants', 'failed',                   2, 'Reference: VIDEO_TRANSITIONS.', null),
  ('video', 'waiting_for_participants', 'ended',                    3, 'Reference: VIDEO_TRANSITIONS (if cancelled before starting).', null),
  ('video', 'active',                   'ended',                    1, 'Reference: VIDEO_TRANSITIONS.', null),
  ('video', 'active',                   'failed',                   2, 'Reference: VIDEO_TRANSITIONS.', null),
  ('video', 'failed',                   'waiting_for_participants', 1, 'Reference: VIDEO_TRANSITIONS (retry).', null),
  ('video', 'failed',                   'ended',                    2, 'The failed call is abandoned, so its session can be completed, cancelled or marked no-show.', 'D3'),

  ('form', 'pending', 'completed', 1, 'A required form is filled in; completion is final.', 'D7');

insert into app_hidden.reason_codes (code, meaning) values
  ('PAYMENT_REQUIRED',    'The session cannot move on before it is paid.'),
  ('FORMS_REQUIRED',      'The session cannot move on before every required intake form is complete.'),
  ('RETROACTIVE_PAYMENT', 'A finished session cannot be reopened for payment.'),
  ('RETROACTIVE_CHANGE',  'A confirmed payment cannot be taken back to an earlier state.');

insert into app_hidden.forbidden_transitions (entity_type, from_state, to_state, reason_code, note, decision) values
  ('session', 'requested', 'ready',           'PAYMENT_REQUIRED',    'Reference: FORBIDDEN_TRANSITIONS (payment bypassing).', 'D6'),
  ('session', 'approved',  'in_progress',     'PAYMENT_REQUIRED',    'Reference: FORBIDDEN_TRANSITIONS (payment bypassing).', 'D6'),
  ('session', 'paid',      'in_progress',     'FORMS_REQUIRED',      'Reference: FORBIDDEN_TRANSITIONS (form bypassing).', 'D6'),
  ('session', 'completed', 'payment_pending', 'RETROACTIVE_PAYMENT', 'Reference: FORBIDDEN_TRANSITIONS (retroactive changes).', 'D6'),
  ('payment', 'confirmed', 'pending',         'RETROACTIVE_CHANGE',  'Reference: FORBIDDEN_TRANSITIONS (retroactive changes).', 'D6');

insert into app_hidden.payment_session_sync (payment_state, session_state, note, decision) values
  ('pending',   'requested',         'Reference: PAYMENT_SESSION_SYNC_RULES.', null),
  ('pending',   'approved',          'Reference: PAYMENT_SESSION_SYNC_RULES.', null),
  ('initiated', 'payment_pending',   'Reference: PAYMENT_SESSION_SYNC_RULES.', null),
  ('confirmed', 'paid',              'Reference: PAYMENT_SESSION_SYNC_RULES.', null),
  ('confirmed', 'forms_required',    'Reference: PAYMENT_SESSION_SYNC_RULES.', null),
  ('confirmed', 'ready',             'Reference: PAYMENT_SESSION_SYNC_RULES.', null),
  ('confirmed', 'in_progress',       'Reference: PAYMENT_SESSION_SYNC_RULES.', null),
  ('confirmed', 'completed',         'Reference: PAYMENT_SESSION_SYNC_RULES.', null),
  ('confirmed', 'no_show_client',    'The client did not come: the payment is kept (otherwise no_show_client is unreachable).', 'D1'),
  ('failed',    'payment_pending',   'Reference: PAYMENT_SESSION_SYNC_RULES.', null),
  ('failed',    'cancelled',         'Reference: PAYMENT_SESSION_SYNC_RULES.', null),
  ('refunded',  'cancelled',         'Reference: PAYMENT_SESSION_SYNC_RULES.', null),
  ('refunded',  'no_show_therapist', 'Reference: PAYMENT_SESSION_SYNC_RULES.', null),
  ('cancelled', 'cancelled',         'Reference: PAYMENT_SESSION_SYNC_RULES.', null);

insert into app_hidden.payment_state_actions (payment_state, action, note, decision) values
  ('failed', 'ALERT_CLIENT_RETRY', 'Reference: PAYMENT_SESSION_SYNC_RULES.failed.requiredActions.', null);

insert into app_hidden.session_video_sync (session_state, video_state, note, decision) values
  ('requested',         'not_started',              'No call before the session is ready.', 'D4'),
  ('approved',          'not_started',              'No call before the session is ready.', 'D4'),
  ('payment_pending',   'not_started',              'No call before the session is ready.', 'D4'),
  ('paid',              'not_started',              'No call before the session is ready.', 'D4'),
  ('forms_required',    'not_started',              'No call before the session is ready.', 'D4'),
  ('ready',             'not_started',              'Reference: SESSION_VIDEO_SYNC_RULES.', null),
  ('ready',             'waiting_for_participants', 'Reference: SESSION_VIDEO_SYNC_RULES.', null),
  ('ready',             'failed',                   'A call may fail before the session starts, and be retried.', 'D2'),
  ('in_progress',       'waiting_for_participants', 'Reference: SESSION_VIDEO_SYNC_RULES.', null),
  ('in_progress',       'active',                   'Reference: SESSION_VIDEO_SYNC_RULES.', null),
  ('in_progress',       'failed',                   'A call may fail during the session, and be retried.', 'D2'),
  ('completed',         'ended',                    'Reference: SESSION_VIDEO_SYNC_RULES.', null),
  ('cancelled',         'not_started',              'Reference: SESSION_VIDEO_SYNC_RULES.', null),
  ('cancelled',         'ended',                    'Reference: SESSION_VIDEO_SYNC_RULES.', null),
  ('no_show_client',    'not_started',              'A no-show session''s call never started or is over.', 'D4'),
  ('no_show_client',    'ended',                    'A no-show session''s call never started or is over.', 'D4'),
  ('no_show_therapist', 'not_started',              'A no-show session''s call never started or is over.', 'D4'),
  ('no_show_therapist', 'ended',                    'A no-show session''s call never started or is over.', 'D4');

insert into app_hidden.session_call_access (session_state, can_join_call, refusal_code, refusal_message, note, decision) values
  ('requested',         false, 'UNPAID_ACCESS',    'Cannot join video call with pending payment', 'Not paid yet.', 'D4'),
  ('approved',          false, 'UNPAID_ACCESS',    'Cannot join video call with pending payment', 'Not paid yet.', 'D4'),
  ('payment_pending',   false, 'UNPAID_ACCESS',    'Cannot join video call with pending payment', 'Reference: FORBIDDEN_TRANSITIONS video.join + session.payment_pending.', 'D6'),
  ('paid',              false, 'FORMS_INCOMPLETE', 'Cannot join video call with incomplete forms', 'Paid, but the forms are not yet checked.', 'D4'),
  ('forms_required',    false, 'FORMS_INCOMPLETE', 'Cannot join video call with incomplete forms', 'Reference: FORBIDDEN_TRANSITIONS video.join + forms.incomplete.', 'D6'),
  ('ready',             true,  null, null, 'Reference: SESSION_VIDEO_SYNC_RULES.ready.canJoinCall.', null),
  ('in_progress',       true,  null, null, 'Reference: SESSION_VIDEO_SYNC_RULES.in_progress.canJoinCall.', null),
  ('completed',         false, 'SESSION_CLOSED',   'Cannot join video call of a closed session', 'Reference: SESSION_VIDEO_SYNC_RULES.completed.canJoinCall.', null),
  ('cancelled',         false, 'SESSION_CLOSED',   'Cannot join video call of a closed session', 'Reference: SESSION_VIDEO_SYNC_RULES.cancelled.canJoinCall.', null),
  ('no_show_client',    false, 'SESSION_CLOSED',   'Cannot join video call of a closed session', 'A no-show session is over.', 'D4'),
  ('no_show_therapist', false, 'SESSION_CLOSED',   'Cannot join video call of a closed session', 'A no-show session is over.', 'D4');

insert into app_hidden.session_form_requirements (session_state, forms_complete_required, note, decision) values
  ('requested',         false, 'Forms may be filled in at any time before the session is ready.', 'D7'),
  ('approved',          false, 'Forms may be filled in at any time before the session is ready.', 'D7'),
  ('payment_pending',   false, 'Forms may be filled in at any time before the session is ready.', 'D7'),
  ('paid',              false, 'Paid: the session moves on to forms_required or ready.', 'D7'),
  ('forms_required',    false, 'Waiting for the forms.', 'D7'),
  ('ready',             true,  'Ready only when every required form is complete.', 'D7'),
  ('in_progress',       true,  'Reached only from ready.', 'D7'),
  ('completed',         true,  'Reached only from in_progress.', 'D7'),
  ('cancelled',         false, 'A cancelled session needs no forms.', 'D7'),
  ('no_show_client',    true,  'Reached only from ready.', 'D7'),
  ('no_show_therapist', true,  'Reached only from ready.', 'D7');
