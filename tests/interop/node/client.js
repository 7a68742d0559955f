// A jobwarden client in Node.js: submits a job, watches its events until it finishes, reads it back.
//
//   node client.js HOST:PORT ACTION '{"json": "input"}'
//
// Prints one JSON line per event ({sequence, type, status, progress}) and, last, the finished job
// ({id, status, result, progress}). Exits 0 when the job COMPLETED, 1 otherwise.
'use strict';

const { clients, call, toStruct, fromStruct } = require('./lib');

const [address = '127.0.0.1:50051', action = 'node-echo', inputText = '{}'] = process.argv.slice(2);
const TERMINAL = new Set(['JOB_STATUS_COMPLETED', 'JOB_STATUS_FAILED', 'JOB_STATUS_CANCELLED', 'JOB_STATUS_REJECTED']);

async function main() {
  const { jobs } = clients(address);
  const submitted = await call(jobs, 'SubmitJob', { action, input: toStruct(JSON.parse(inputText)), labels: { from: 'node' } });
  const jobId = submitted.job.id;
  console.log(JSON.stringify({ submitted: jobId, status: submitted.job.status }));

  // Replay this job's events from the start (after_sequence 0), then follow it live.
  await new Promise((resolve, reject) => {
    const watch = jobs.WatchJobs({ after_sequence: 0, job_ids: [jobId] });
    watch.on('data', (response) => {
      for (const event of response.events) {
        console.log(JSON.stringify({
          sequence: Number(event.sequence), type: event.type, status: event.job.status, progress: event.job.progress,
        }));
        if (TERMINAL.has(event.job.status)) {
          watch.cancel();
          resolve();
        }
      }
    });
    watch.on('error', (error) => (error.code === 1 ? resolve() : reject(error))); // 1: CANCELLED by us
  });

  const { job } = await call(jobs, 'GetJob', { job_id: jobId });
  console.log(JSON.stringify({ id: job.id, status: job.status, progress: job.progress, result: fromStruct(job.result) }));
  return job.status === 'JOB_STATUS_COMPLETED' ? 0 : 1;
}

main().then((code) => process.exit(code), (error) => {
  console.error(`error: ${error.code} ${error.details || error.message}`);
  process.exit(1);
});
