/*
 * An independent copy of the reference's constants
 * (../shared/reference/flow-integrity-state-machines.md), with decisions
 * D1–D7 (../shared/reference/decisions.md) applied, written here by hand.
 * The tests hold the database's rules tables against it, so a wrong row in a
 * migration fails a test. Nothing outside test/ reads it.
 */

export type Machine = 'payment' | 'session' | 'video' | 'form';

export const STATES: Record<Machine, string[]> = {
  payment: ['pending', 'initiated', 'confirmed', 'failed', 'refunded', 'cancelled'],
  session: [
    'requested', 'approved', 'payment_pending', 'paid', 'forms_required', 'ready',
    'in_progress', 'completed', 'cancelled', 'no_show_client', 'no_show_therapist',
  ],
  video: ['not_started', 'waiting_for_participants', 'active', 'ended', 'failed'],
  // D7: a required intake form is pending until completed.
  form: ['pending', 'completed'],
};

export const INITIAL: Record<Machine, string> = {
  payment: 'pending',
  session: 'requested',
  video: 'not_started',
  form: 'pending',
};

export const TERMINAL: Record<Machine, string[]> = {
  payment: ['refunded', 'cancelled'],
  session: ['completed', 'cancelled', 'no_show_client', 'no_show_therapist'],
  video: ['ended'],
  form: ['completed'],
};

/** Allowed next states, in the reference's order. */
export const TRANSITIONS: Record<Machine, Record<string, string[]>> = {
  payment: {
    pending: ['initiated', 'cancelled'],
    initiated: ['confirmed', 'failed', 'cancelled'],
    confirmed: ['refunded'],
    failed: ['initiated', 'cancelled'],
    refunded: [],
    cancelled: [],
  },
  session: {
    requested: ['approved', 'cancelled'],
    approved: ['payment_pending', 'cancelled'],
    payment_pending: ['paid', 'cancelled'],
    paid: ['forms_required', 'ready', 'cancelled'],
    forms_required: ['ready', 'cancelled'],
    ready: ['in_progress', 'no_show_client', 'no_show_therapist', 'cancelled'],
    in_progress: ['completed', 'cancelled'],
    completed: [],
    cancelled: [],
    no_show_client: [],
    no_show_therapist: [],
  },
  video: {
    not_started: ['waiting_for_participants'],
    waiting_for_participants: ['active', 'failed', 'ended'],
    active: ['ended', 'failed'],
    ended: [],
    failed: ['waiting_for_participants', 'ended'], // 'ended': D3
  },
  form: {
    pending: ['completed'],
    completed: [],
  },
};

/** `entity.from → entity.to` → reason code (the video.join ones are in CALL_ACCESS). */
export const FORBIDDEN: Array<{ entity: Machine; from: string; to: string; reason: string }> = [
  { entity: 'session', from: 'requested', to: 'ready', reason: 'PAYMENT_REQUIRED' },
  { entity: 'session', from: 'approved', to: 'in_progress', reason: 'PAYMENT_REQUIRED' },
  { entity: 'session', from: 'paid', to: 'in_progress', reason: 'FORMS_REQUIRED' },
  { entity: 'session', from: 'completed', to: 'payment_pending', reason: 'RETROACTIVE_PAYMENT' },
  { entity: 'payment', from: 'confirmed', to: 'pending', reason: 'RETROACTIVE_CHANGE' },
];

/** Payment state → allowed session states. */
export const PAYMENT_SESSION_SYNC: Record<string, string[]> = {
  pending: ['requested', 'approved'],
  initiated: ['payment_pending'],
  confirmed: ['paid', 'forms_required', 'ready', 'in_progress', 'completed', 'no_show_client'], // no_show_client: D1
  failed: ['payment_pending', 'cancelled'],
  refunded: ['cancelled', 'no_show_therapist'],
  cancelled: ['cancelled'],
};

export const REQUIRED_ACTIONS: Record<string, string[]> = {
  pending: [],
  initiated: [],
  confirmed: [],
  failed: ['ALERT_CLIENT_RETRY'],
  refunded: [],
  cancelled: [],
};

/** Session state → allowed video states (D2 adds failed to ready/in_progress; D4 fills the silent rows). */
export const SESSION_VIDEO_SYNC: Record<string, string[]> = {
  requested: ['not_started'],
  approved: ['not_started'],
  payment_pending: ['not_started'],
  paid: ['not_started'],
  forms_required: ['not_started'],
  ready: ['not_started', 'waiting_for_participants', 'failed'],
  in_progress: ['waiting_for_participants', 'active', 'failed'],
  completed: ['ended'],
  cancelled: ['not_started', 'ended'],
  no_show_client: ['not_started', 'ended'],
  no_show_therapist: ['not_started', 'ended'],
};

/** Session state → the error code refusing a video join, or null when joining is allowed. */
export const CALL_ACCESS: Record<string, string | null> = {
  requested: 'UNPAID_ACCESS',
  approved: 'UNPAID_ACCESS',
  payment_pending: 'UNPAID_ACCESS',
  paid: 'FORMS_INCOMPLETE',
  forms_required: 'FORMS_INCOMPLETE',
  ready: null,
  in_progress: null,
  completed: 'SESSION_CLOSED',
  cancelled: 'SESSION_CLOSED',
  no_show_client: 'SESSION_CLOSED',
  no_show_therapist: 'SESSION_CLOSED',
};

/** D7: session states that need every required form complete. */
export const FORMS_COMPLETE_REQUIRED = ['ready', 'in_progress', 'completed', 'no_show_client', 'no_show_therapist'];

/** The shortest path of allowed transitions from the initial state to `target`. */
export function pathTo(machine: Machine, target: string): string[] {
  const queue: string[][] = [[INITIAL[machine]]];
  const seen = new Set([INITIAL[machine]]);
  while (queue.length) {
    const path = queue.shift()!;
    const last = path[path.length - 1];
    if (last === target) return path.slice(1);
    for (const next of TRANSITIONS[machine][last]) {
      if (!seen.has(next)) {
        seen.add(next);
        queue.push([...path, next]);
      }
    }
  }
  throw new Error(`${machine} state ${target} is unreachable`);
}

export function transitionMessage(machine: Machine, from: string, to: string): { code: string; reason: string | null; message: string } {
  const allowed = `[${TRANSITIONS[machine][from].join(', ')}]`;
  const forbidden = FORBIDDEN.find((f) => f.entity === machine && f.from === from && f.to === to);
  if (forbidden) {
    return {
      code: 'FORBIDDEN_TRANSITION',
      reason: forbidden.reason,
      message: `FORBIDDEN TRANSITION: ${machine}.${from} → ${machine}.${to}. Reason: ${forbidden.reason}. Allowed: ${allowed}`,
    };
  }
  return { code: 'INVALID_STATE_TRANSITION', reason: null, message: `Invalid ${machine} transition: ${from} → ${to}. Allowed: ${allowed}` };
}

export type Role = 'client' | 'therapist' | 'admin' | 'payment_provider' | 'integration' | 'anonymous';

/** Who may take each flow step (issue 3), on their own sessions or on any; written here independently of app_hidden.step_permissions. */
export const MAY: Record<string, Partial<Record<Role, 'own' | 'any'>>> = {
  request_session: { client: 'own', admin: 'any' },
  approve_session: { therapist: 'own', admin: 'any' },
  initiate_payment: { client: 'own', admin: 'any' },
  record_payment_outcome: { payment_provider: 'any' },
  complete_form: { client: 'own', admin: 'any' },
  join_call: { client: 'own', therapist: 'own' },
  leave_call: { client: 'own', therapist: 'own' },
  start_session: { therapist: 'own', admin: 'any' },
  complete_session: { therapist: 'own', admin: 'any' },
  cancel_session: { client: 'own', admin: 'any' },
  'mark_no_show:client': { therapist: 'own', admin: 'any' },
  'mark_no_show:therapist': { admin: 'any' },
  refund_payment: { admin: 'any' },
  report_call_failure: { client: 'own', therapist: 'own', admin: 'any' },
};

