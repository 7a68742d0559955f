// A jobwarden workflow from Node.js: puts a definition, starts a work order, polls its run until it
// ends, and reads the step's job back — from protos/ alone.
//
//   node workflow.js HOST:PORT NAME '{"json": "input"}'
//
// The definition: "echo" (a job of the action node-echo, served by worker.js) then, on success,
// "pause" (a 100 ms delay step). Prints one JSON line each for the put, the start, every change of
// the run's status seen while polling, and last the finished run ({id, status, steps, output}).
// Exits 0 when the run COMPLETED, 1 otherwise.
'use strict';

const { clients, call, toStruct, fromStruct } = require('./lib');

const [address = '127.0.0.1:50051', name = 'node-flow', inputText = '{}'] = process.argv.slice(2);
const FINISHED = new Set(['WORKFLOW_RUN_STATUS_COMPLETED', 'WORKFLOW_RUN_STATUS_FAILED', 'WORKFLOW_RUN_STATUS_CANCELLED']);

const definition = {
  name,
  description: 'put from Node.js',
  steps: [
    // A template: the job's input is built from the run's input when the step starts.
    { name: 'echo', action: { action: 'node-echo', input: toStruct({ n: '{{ input.n }}', via: 'node' }) } },
    { name: 'pause', delay: { duration: { seconds: 0, nanos: 100000000 } } },
  ],
  edges: [{ source: 'echo', target: 'pause', kind: 'EDGE_KIND_SUCCESS' }],
  context: { caller: 'node' },
};

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function main() {
  const { workflows, jobs } = clients(address);
  const put = await call(workflows, 'PutWorkflow', { definition });
  console.log(JSON.stringify({ put: put.definition.name, version: put.definition.version, created: put.created }));

  const started = await call(workflows, 'StartWorkflow', { workflow: name, input: toStruct(JSON.parse(inputText)) });
  const runId = started.run.id;
  console.log(JSON.stringify({ order: started.order.id, run: runId, status: started.run.status }));

  let run = started.run;
  let last = null;
  const deadline = Date.now() + 60000;
  for (;;) {
    ({ run } = await call(workflows, 'GetWorkflowRun', { run_id: runId }));
    if (run.status !== last) {
      console.log(JSON.stringify({ status: run.status }));
      last = run.status;
    }
    if (FINISHED.has(run.status)) break;
    if (Date.now() > deadline) throw new Error(`run ${runId} did not end within 60 s`);
    await sleep(50);
  }

  const echo = run.steps.find((step) => step.name === 'echo');
  const { job } = await call(jobs, 'GetJob', { job_id: echo.job_id });
  console.log(JSON.stringify({
    id: run.id,
    status: run.status,
    work_order_id: run.work_order_id,
    steps: run.steps.map((step) => ({ name: step.name, status: step.status })),
    output: fromStruct(run.output),
    job: { id: job.id, workflow_run_id: job.workflow_run_id, workflow_step: job.workflow_step, result: fromStruct(job.result) },
  }));
  return run.status === 'WORKFLOW_RUN_STATUS_COMPLETED' ? 0 : 1;
}

main().then((code) => process.exit(code), (error) => {
  console.error(`error: ${error.code} ${error.details || error.message}`);
  process.exit(1);
});
