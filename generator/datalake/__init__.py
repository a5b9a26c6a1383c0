"""The data lake export: dated snapshot folders of Parquet files, one table per CDP entity."""
