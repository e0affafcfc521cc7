/*
 * graphile-worker inside the server process (WORKER=off to run none here):
 * the jobs live in the flow's own database (schema graphile_worker), queued
 * in the same transactions as the changes that need them.
 */
import { run, Runner, TaskList } from 'graphile-worker';
import { quietLogger } from './logger';

export interface WorkerOptions {
  ownerConnectionString: string;
  tasks: TaskList;
  concurrency?: number;
}

export async function startWorker({ ownerConnectionString, tasks, concurrency = 4 }: WorkerOptions): Promise<Runner> {
  return run({
    connectionString: ownerConnectionString,
    taskList: tasks,
    // Every minute: open payment attempts are looked at, whatever happened to their own jobs;
    // expired claims on required actions go back to the queue.
    crontab: '* * * * * mpesa_sweep\n* * * * * outbox_sweep',
    concurrency,
    noHandleSignals: true,
    pollInterval: 1000,
    logger: quietLogger,
  });
}
