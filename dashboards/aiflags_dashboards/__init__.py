"""aiflags' Grafana dashboards and Prometheus alerts, generated with Grafana's
foundation SDK. `python dashboards/generate.py` writes them into the chart."""
