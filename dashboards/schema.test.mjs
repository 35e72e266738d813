// The generated dashboards against Grafana's own schema: the TypeScript types
// Grafana publishes as @grafana/schema, turned into JSON Schema and checked
// with ajv. Run: cd dashboards && npm ci && node --test
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Ajv from 'ajv';
import { createGenerator } from 'ts-json-schema-generator';

const here = dirname(fileURLToPath(import.meta.url));
const chartDashboards = join(here, '..', 'charts', 'aiflags', 'dashboards');
const generator = createGenerator({
  path: join(here, 'grafana-types.ts'),
  type: '*',
  skipTypeCheck: true,
  additionalProperties: false,
});
const ajv = new Ajv({ allErrors: true, strict: false });

function dropRequired(node) {
  if (Array.isArray(node)) node.forEach(dropRequired);
  else if (node && typeof node === 'object') {
    delete node.required;
    Object.values(node).forEach(dropRequired);
  }
}

function validator(type, { partial = false } = {}) {
  const schema = generator.createSchema(type);
  if (partial) {
    // Grafana merges saved panel options over the plugin's defaults, so a
    // dashboard may leave any option out; names and types must still match.
    dropRequired(schema);
  }
  return ajv.compile(schema);
}

function check(validate, value, where) {
  const ok = validate(value);
  assert.ok(ok, `${where}: ${ajv.errorsText(validate.errors, { separator: '\n  ' })}`);
}

const dashboardSchema = validator('CheckDashboard');
const panelSchemas = {
  timeseries: { options: validator('CheckTimeseriesOptions', { partial: true }),
                custom: validator('CheckTimeseriesFieldConfig', { partial: true }) },
  stat: { options: validator('CheckStatOptions', { partial: true }) },
  table: { options: validator('CheckTableOptions', { partial: true }),
           custom: validator('CheckTableFieldConfig', { partial: true }) },
};

const files = readdirSync(chartDashboards).filter((f) => f.endsWith('.json'));

test('the chart carries the three dashboards', () => {
  assert.deepEqual(files.sort(), ['aiflags-operator.json', 'aiflags-overview.json', 'aiflags-rollout.json']);
});

for (const file of files) {
  const board = JSON.parse(readFileSync(join(chartDashboards, file), 'utf8'));

  test(`${file}: valid against Grafana's dashboard schema`, () => {
    check(dashboardSchema, board, file);
  });

  test(`${file}: every panel has a title, a unit and a query, and valid options`, () => {
    const panels = board.panels.filter((p) => p.type !== 'row');
    assert.ok(panels.length > 0);
    for (const panel of panels) {
      const where = `${file} panel ${panel.id} "${panel.title}"`;
      assert.ok(panel.title?.trim(), `${where}: no title`);
      assert.ok(panel.description?.trim(), `${where}: no description`);
      assert.ok(panel.fieldConfig?.defaults?.unit, `${where}: no unit`);
      assert.ok(panel.targets?.length > 0, `${where}: no query`);
      for (const target of panel.targets) {
        assert.ok(target.expr?.trim(), `${where}: empty query`);
        assert.match(target.refId, /^[A-Z]$/, `${where}: refId`);
      }
      assert.equal(new Set(panel.targets.map((t) => t.refId)).size, panel.targets.length);
      assert.deepEqual(panel.datasource, { type: 'prometheus', uid: '${datasource}' }, where);
      const schemas = panelSchemas[panel.type];
      assert.ok(schemas, `${where}: panel type ${panel.type} is not checked`);
      check(schemas.options, panel.options ?? {}, `${where} options`);
      if (schemas.custom) check(schemas.custom, panel.fieldConfig.defaults.custom ?? {}, `${where} field config`);
    }
  });

  test(`${file}: panels have unique ids and fit the 24-column grid`, () => {
    const ids = board.panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length);
    for (const { gridPos: g, title } of board.panels) {
      assert.ok(g.x >= 0 && g.w > 0 && g.x + g.w <= 24, `${title}: ${JSON.stringify(g)}`);
    }
  });

  test(`${file}: queries use only variables the dashboard defines`, () => {
    const defined = new Set(board.templating.list.map((v) => v.name));
    const builtin = new Set(['__rate_interval', '__range', '__interval']);
    const texts = [
      ...board.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)),
      ...board.templating.list.map((v) => (typeof v.query === 'string' ? v.query : '')),
    ];
    for (const text of texts) {
      for (const [, name] of text.matchAll(/\$\{?(\w+)\}?/g)) {
        if (/^\d+$/.test(name)) continue; // label_replace's $1
        assert.ok(defined.has(name) || builtin.has(name), `$${name} in ${text}`);
      }
    }
  });
}
