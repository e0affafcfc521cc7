/*
 * What a client sees of an error. PostGraphile masks every database error by
 * default; ours (the codes of app_hidden.error_codes, raised with our own
 * SQLSTATEs and a JSON detail) pass through with their code, reason and
 * allowed alternatives in `extensions`. Everything else stays masked: no SQL,
 * no row data, no stack.
 */
import { defaultMaskError } from 'postgraphile/grafserv';
import { GraphQLError } from 'postgraphile/graphql';

/** SQLSTATEs that are ours: 5 characters, first a letter other than F, H, P or X, third not 0 or P, fourth a letter, not ending in 000. */
const OUR_SQLSTATE = /^(?!.*000$)[A-EG-OQ-WYZ][0-9A-Z][1-9A-OQ-Z][A-Z][0-9A-Z]$/;

interface DatabaseError {
  code?: unknown;
  message: string;
  detail?: unknown;
  hint?: unknown;
}

export function maskError(error: GraphQLError): GraphQLError {
  const original = error.originalError as DatabaseError | undefined;
  if (original && typeof original.code === 'string' && OUR_SQLSTATE.test(original.code) && typeof original.detail === 'string') {
    let detail: Record<string, unknown>;
    try {
      detail = JSON.parse(original.detail);
    } catch {
      return defaultMaskError(error);
    }
    const { code, reason, allowed, ...rest } = detail;
    return new GraphQLError(original.message, {
      nodes: error.nodes,
      source: error.source,
      positions: error.positions,
      path: error.path,
      extensions: {
        code,
        ...(reason != null ? { reason } : {}),
        ...(allowed != null ? { allowed } : {}),
        detail: rest,
        ...(typeof original.hint === 'string' ? { hint: original.hint } : {}),
      },
    });
  }
  return defaultMaskError(error);
}
