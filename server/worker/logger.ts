/*
 * graphile-worker's logger: warnings and errors only (it reports every job
 * otherwise), unless DEBUG is set.
 */
import { Logger } from 'graphile-worker';

export const quietLogger = new Logger((scope) => (level, message, meta) => {
  if (process.env.DEBUG || level === 'error' || level === 'warning') {
    const where = scope.taskIdentifier ? ` [${scope.taskIdentifier}${scope.jobId ? ` #${scope.jobId}` : ''}]` : '';
    console[level === 'error' ? 'error' : 'warn'](`worker${where}: ${message}`, meta ?? '');
  }
});
