# One image for web, scheduler, worker and migrate (docker-compose.yml picks the command).
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 TZ=UTC
WORKDIR /srv/cronwork
COPY pyproject.toml README.md ./
COPY app app
COPY cronwork cronwork
COPY jobs jobs
COPY scheduler_boot scheduler_boot
COPY migrations migrations
COPY gunicorn.conf.py Procfile ./
# The vision extra for the heavy worker (jobs.clip_worker): one image for every service.
RUN pip install --no-cache-dir '.[postgres,vision]' && useradd --system cronwork
USER cronwork
CMD ["gunicorn", "-c", "gunicorn.conf.py", "app:create_app()"]
