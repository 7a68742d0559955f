// Loads jobwarden's API from protos/ (nothing generated, nothing from the Python SDK) and gives
// the four services plus helpers for google.protobuf.Struct, which proto-loader leaves as messages.
'use strict';

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTOS = path.resolve(__dirname, '..', '..', '..', 'protos');

const definition = protoLoader.loadSync(
  [
    'jobwarden/v1/job_service.proto',
    'jobwarden/v1/executor_service.proto',
    'jobwarden/v1/lock_service.proto',
    'jobwarden/v1/workflow_service.proto',
  ],
  {
    includeDirs: [PROTOS],
    keepCase: true, // field names as in the .proto: job_id, heartbeat_interval
    longs: Number,
    enums: String, // 'JOB_STATUS_COMPLETED'
    defaults: true,
    oneofs: true, // message.message === 'assignment' tells which field of a oneof is set
  },
);
const api = grpc.loadPackageDefinition(definition).jobwarden.v1;

function clients(address) {
  const credentials = grpc.credentials.createInsecure();
  return {
    jobs: new api.JobService(address, credentials),
    executors: new api.ExecutorService(address, credentials),
    locks: new api.LockService(address, credentials),
    workflows: new api.WorkflowService(address, credentials),
  };
}

// google.protobuf.Value comes from protobufjs's bundled definitions, whose field names are camelCase
// (numberValue, structValue) even with keepCase.
function toValue(value) {
  if (value === null || value === undefined) return { nullValue: 'NULL_VALUE' };
  if (typeof value === 'number') return { numberValue: value };
  if (typeof value === 'string') return { stringValue: value };
  if (typeof value === 'boolean') return { boolValue: value };
  if (Array.isArray(value)) return { listValue: { values: value.map(toValue) } };
  return { structValue: toStruct(value) };
}

function toStruct(object) {
  const fields = {};
  for (const [key, value] of Object.entries(object || {})) fields[key] = toValue(value);
  return { fields };
}

function fromValue(value) {
  switch (value.kind) {
    case 'numberValue': return value.numberValue;
    case 'stringValue': return value.stringValue;
    case 'boolValue': return value.boolValue;
    case 'structValue': return fromStruct(value.structValue);
    case 'listValue': return (value.listValue.values || []).map(fromValue);
    default: return null;
  }
}

function fromStruct(struct) {
  const out = {};
  for (const [key, value] of Object.entries((struct && struct.fields) || {})) out[key] = fromValue(value);
  return out;
}

// Unary calls as promises.
function call(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: Date.now() + 30000 }, (error, response) =>
      error ? reject(error) : resolve(response));
  });
}

module.exports = { api, clients, call, toStruct, fromStruct, grpc };
