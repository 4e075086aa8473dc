"""The registered model: what it carries, how it forecasts (the pyfunc), the promotion gate, forecasting with it."""
