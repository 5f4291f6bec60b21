# One image runs the API (the default CMD), the Celery worker and beat; see docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    PATH="/opt/venv/bin:$PATH" \
    WEB_CONCURRENCY=3 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/metrics

# The uv version the Makefile pins, so the lock file is read the way it was written.
RUN pip install --no-cache-dir "uv==0.13.9"

# /tmp/metrics: every process of a container writes its metrics samples there (see
# enrichment_project/metrics.py); the directory must exist before Python imports the code.
RUN useradd --system --user-group --no-create-home --shell /usr/sbin/nologin app \
    && install -d -o app -g app /app /tmp/metrics
WORKDIR /app

# Dependencies before the code: this layer is rebuilt only when pyproject.toml or uv.lock change.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev

COPY --chown=app:app . .
USER app
RUN python manage.py collectstatic --no-input

EXPOSE 8000
# gunicorn reads its worker count from WEB_CONCURRENCY and its hooks from /app/gunicorn.conf.py.
CMD ["gunicorn", "enrichment_project.wsgi:application", "--bind", "0.0.0.0:8000", "--access-logfile", "-"]
