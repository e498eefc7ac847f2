{{/*
Python (boto3, in the api image) that creates the bucket named by $BUCKET at $AWS_ENDPOINT_URL
once the server answers; an existing bucket is fine. MinIO's make-bucket Job runs it, and the
backup CronJob before each backup to a MinIO bucket.
*/}}
{{- define "common.s3.makeBucketScript" -}}
import os, sys, time
import boto3
from botocore.exceptions import ClientError, EndpointConnectionError
bucket = os.environ["BUCKET"]
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
for attempt in range(60):
    try:
        s3.create_bucket(Bucket=bucket)
        print(f"created bucket {bucket}")
        sys.exit(0)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            print(f"bucket {bucket} exists")
            sys.exit(0)
        print(f"waiting for MinIO: {exc}", flush=True)
    except EndpointConnectionError as exc:
        print(f"waiting for MinIO: {exc}", flush=True)
    time.sleep(5)
sys.exit(f"could not create bucket {bucket} at {os.environ['AWS_ENDPOINT_URL']}")
{{- end -}}
