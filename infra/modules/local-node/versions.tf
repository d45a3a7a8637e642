terraform {
  # terraform_data is built in since 1.4; the product pins 1.5.7.
  required_version = ">= 1.4.0"
}
