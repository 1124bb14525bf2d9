import os

print(f"hello from {os.environ.get('APP_NAME', 'kiln')} on ECR")
