// The Grafana types the generated dashboards are checked against
// (schema.test.mjs): the dashboard model, and the options and field config of
// each panel plugin the dashboards use, from Grafana's @grafana/schema.
import type { Dashboard as GrafanaDashboard } from './node_modules/@grafana/schema/dist/types/raw/dashboard/x/types.gen';
import type * as timeseries from './node_modules/@grafana/schema/dist/types/raw/composable/timeseries/panelcfg/x/types.gen';
import type * as stat from './node_modules/@grafana/schema/dist/types/raw/composable/stat/panelcfg/x/types.gen';
import type * as table from './node_modules/@grafana/schema/dist/types/raw/composable/table/panelcfg/x/types.gen';

export type CheckDashboard = GrafanaDashboard;
export type CheckTimeseriesOptions = timeseries.Options;
export type CheckTimeseriesFieldConfig = timeseries.FieldConfig;
export type CheckStatOptions = stat.Options;
export type CheckTableOptions = table.Options;
export type CheckTableFieldConfig = table.FieldConfig;
