// A jobwarden worker in Node.js: serves the action "node-echo" over ExecutorService.Connect.
//
//   node worker.js HOST:PORT [--jobs N]
//
// For each assignment it reports progress 50 then 100 with a message, logs a line, and returns
// {echo: <input>, runtime: "node"}. It heartbeats at the interval the engine asks for, accepts
// both the single and the batched forms of assignments and acks, and keeps every result until
// its ResultAck. With --jobs N it exits 0 after N acknowledged results; SIGTERM ends it at once.
'use strict';

const { clients, toStruct, fromStruct } = require('./lib');

const address = process.argv[2] || '127.0.0.1:50051';
const jobsFlag = process.argv.indexOf('--jobs');
const wanted = jobsFlag > 0 ? Number(process.argv[jobsFlag + 1]) : Infinity;

const { executors } = clients(address);
const stream = executors.Connect();
const unacked = new Map(); // job_id/attempt -> JobResult, until the engine commits it
let acknowledged = 0;
let heartbeat = null;

function send(message) {
  stream.write(message);
}

function run(assignment) {
  const jobId = assignment.job_id || assignment.job.id;
  const attempt = assignment.attempt;
  const input = fromStruct(assignment.job.input);
  send({ job_update: { job_id: jobId, attempt, progress: 50, message: 'halfway (node)' } });
  send({
    job_log: {
      job_id: jobId,
      attempt,
      lines: [{ level: 'INFO', message: `node worker ran ${jobId}`, time: { seconds: Math.floor(Date.now() / 1000), nanos: 0 } }],
    },
  });
  setTimeout(() => {
    const result = {
      job_id: jobId,
      attempt,
      status: 'JOB_STATUS_COMPLETED',
      result: toStruct({ echo: input, runtime: 'node' }),
      job_variables: { runtime: 'node' },
    };
    unacked.set(`${jobId}/${attempt}`, result);
    send({ job_update: { job_id: jobId, attempt, progress: 100, message: 'done (node)' } });
    send({ job_result: result });
  }, 20);
}

function acked(ack) {
  if (unacked.delete(`${ack.job_id}/${ack.attempt}`)) acknowledged += 1;
  if (!ack.accepted) console.error(`result of ${ack.job_id} refused: ${ack.reason}`);
  if (acknowledged >= wanted) {
    console.log(JSON.stringify({ acknowledged }));
    clearInterval(heartbeat);
    stream.end();
    process.exit(0);
  }
}

stream.on('data', (message) => {
  switch (message.message) {
    case 'registered': {
      const interval = message.registered.heartbeat_interval;
      const ms = interval ? Number(interval.seconds) * 1000 + interval.nanos / 1e6 : 5000;
      console.log(JSON.stringify({ registered: message.registered.worker_id, heartbeat_ms: ms }));
      heartbeat = setInterval(() => {
        send({ heartbeat: { jobs: [...unacked.values()].map((r) => ({ job_id: r.job_id, attempt: r.attempt })) } });
      }, ms);
      break;
    }
    case 'assignment': run(message.assignment); break;
    case 'assignments': message.assignments.assignments.forEach(run); break;
    case 'result_ack': acked(message.result_ack); break;
    case 'result_acks': message.result_acks.acks.forEach(acked); break;
    case 'cancel_request':
      send({ cancel_ack: { job_id: message.cancel_request.job_id, attempt: message.cancel_request.attempt } });
      break;
    case 'refusal': console.error(`refused: ${JSON.stringify(message.refusal)}`); break;
    default: break;
  }
});
stream.on('error', (error) => {
  console.error(`stream error: ${error.code} ${error.details || error.message}`);
  process.exit(1);
});
stream.on('end', () => process.exit(acknowledged >= wanted ? 0 : 1));
process.on('SIGTERM', () => process.exit(0));

send({
  register: {
    worker_name: `node:${process.pid}`,
    executors: [{ action: 'node-echo', supports_resume: false, max_concurrency: 0 }],
    capacity: 4,
    labels: { runtime: 'node' },
  },
});
