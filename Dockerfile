FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml constraints.txt ./
COPY lineage lineage
COPY chaintrace_cli chaintrace_cli
RUN pip install --no-cache-dir -c constraints.txt .
EXPOSE 5000
CMD ["chaintrace", "lineage", "serve", "--host", "0.0.0.0"]
