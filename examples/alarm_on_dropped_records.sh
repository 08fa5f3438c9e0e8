#!/bin/sh
# An alarm on any record dropped by the handlers of /app/orders, from their self-metrics
# (metrics_interval set; namespace WatchtowerRefresh, the default metrics_namespace).
set -eu
aws cloudwatch put-metric-alarm \
  --alarm-name orders-log-records-dropped \
  --namespace WatchtowerRefresh \
  --metric-name Dropped \
  --dimensions Name=LogGroup,Value=/app/orders \
  --statistic Sum --period 300 --evaluation-periods 1 \
  --threshold 0 --comparison-operator GreaterThanThreshold \
  --treat-missing-data notBreaching \
  --alarm-actions arn:aws:sns:eu-west-1:123456789012:ops-alerts
