// The image, pushed to ECR: `<account>.dkr.ecr.<region>.amazonaws.com/<repository>:<content tag>`.
//
//   AWS_ACCOUNT_ID   the account that owns the registry (default: a placeholder, fine for --dry-run)
//   AWS_REGION       the registry's region (default us-east-1)
//   ECR_REPOSITORY   the repository name (default kiln/hello-ecr); create it once with
//                    `aws ecr create-repository --repository-name kiln/hello-ecr`
import { Image } from "@kiln/core";

const account = process.env.AWS_ACCOUNT_ID || "123456789012";
const region = process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION || "us-east-1";
const repository = process.env.ECR_REPOSITORY || "kiln/hello-ecr";

export const registry = `${account}.dkr.ecr.${region}.amazonaws.com`;

export const image = Image.fromDebianBase({
  pythonVersion: [3, 12],
  installer: "pip",
  registry,
  name: repository,
  platform: ["linux/amd64"],
})
  .withEnvVars({ APP_NAME: "hello-ecr" })
  .withSourceFile(new URL("./app/hello.py", import.meta.url), "/app/hello.py");

export default image;
